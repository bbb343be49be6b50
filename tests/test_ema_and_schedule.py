"""The weight average (EMA) and the learning-rate schedules, against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from seq2seq.config.schema import TrainerConfig
from seq2seq.training.ema import WeightAverage
from seq2seq.training.schedule import LearningRateSchedule, step_lr


def test_the_average_follows_the_warmed_up_decay_by_hand() -> None:
    """Start 0, then weights 1, 2, 3 after three updates, decay 0.5: d_n = min(0.5, (1+n)/(10+n))
    is 1/10, 2/11, 3/12, so the average is 0.9·1 = 0.9, then 2/11·0.9 + 9/11·2 = 1.8, then
    0.25·1.8 + 0.75·3 = 2.7."""
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    average = WeightAverage(model, decay=0.5)
    seen = []
    for value in (1.0, 2.0, 3.0):
        with torch.no_grad():
            model.weight.fill_(value)
        average.update()
        seen.append(average.average[0].item())
    assert seen == pytest.approx([0.9, 1.8, 2.7])
    assert average.updates == 3
    assert model.weight.item() == 3.0  # the model keeps its own weights


def test_after_the_warm_up_the_decay_is_the_configured_one() -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    average = WeightAverage(model, decay=0.999)
    average.updates = 100_000
    assert average.current_decay() == 0.999
    average.updates = 0
    assert average.current_decay() == pytest.approx(0.1)


def test_swapped_in_holds_the_average_inside_and_the_weights_after() -> None:
    model = torch.nn.Linear(2, 2)
    average = WeightAverage(model, decay=0.9)
    own = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    average.update()
    after_update = {k: v.clone() for k, v in model.state_dict().items()}
    with average.swapped_in():
        for name, tensor in model.state_dict().items():
            # d_0 = 0.1: the average is 0.1·start + 0.9·(start + 1)
            torch.testing.assert_close(tensor, own[name] + 0.9)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, after_update[name], rtol=0, atol=0)


def test_the_average_round_trips_through_its_state() -> None:
    model = torch.nn.Linear(3, 2)
    average = WeightAverage(model, decay=0.99)
    for _ in range(4):
        with torch.no_grad():
            model.weight.mul_(1.5)
        average.update()
    copy = WeightAverage(torch.nn.Linear(3, 2), decay=0.99)
    copy.load_state_dict(average.state_dict())
    assert copy.updates == 4
    for mine, theirs in zip(copy.average, average.average, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=0)


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5])
def test_a_decay_outside_0_1_is_refused(decay: float) -> None:
    with pytest.raises(ValueError, match="trainer.ema_decay"):
        WeightAverage(torch.nn.Linear(1, 1), decay)


def test_linear_schedule_values_at_given_steps() -> None:
    """Warm-up 10 to 2e-3, then straight down to 1e-5 at update 110, and flat after it."""
    lr = [step_lr(s, 2e-3, 1e-5, 10, 110, "linear") for s in (1, 5, 10, 60, 110, 500)]
    assert lr == pytest.approx([2e-4, 1e-3, 2e-3, 1e-5 + (2e-3 - 1e-5) * 0.5, 1e-5, 1e-5])


def test_cosine_schedule_values_at_given_steps() -> None:
    lr = [step_lr(s, 1e-3, 0.0, 0, 100, "cosine") for s in (1, 25, 50, 75, 100, 101)]
    expected = [1e-3 * 0.5 * (1 + math.cos(math.pi * s / 100)) for s in (1, 25, 50, 75, 100)]
    assert lr == pytest.approx([*expected, 0.0])
    assert lr[2] == pytest.approx(5e-4)


def trainer_config(**overrides: object) -> TrainerConfig:
    return OmegaConf.merge(OmegaConf.structured(TrainerConfig), overrides)  # type: ignore[return-value]


def test_the_schedule_sets_the_optimizer_rate_before_each_update() -> None:
    optimizer = torch.optim.Adam(torch.nn.Linear(1, 1).parameters(), lr=1.0)
    t = trainer_config(lr=1e-3, lr_schedule="linear", warmup_steps=4, lr_decay_steps=8, min_lr=0.0)
    schedule = LearningRateSchedule(optimizer, t)
    rates = []
    for step in range(1, 10):
        schedule.before_update(step)
        rates.append(optimizer.param_groups[0]["lr"])
        schedule.after_validation(0.0)  # a plateau has no effect on this schedule
    assert rates == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 7.5e-4, 5e-4, 2.5e-4, 0.0, 0.0])
    assert schedule.state_dict() == {}


def test_the_plateau_schedule_cuts_on_dev_bleu_only() -> None:
    optimizer = torch.optim.Adam(torch.nn.Linear(1, 1).parameters(), lr=1e-3)
    schedule = LearningRateSchedule(optimizer, trainer_config(lr_patience=0))
    schedule.before_update(1)
    assert optimizer.param_groups[0]["lr"] == 1e-3
    schedule.after_validation(10.0)
    schedule.after_validation(10.0)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(5e-4)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lr_schedule": "step"}, "trainer.lr_schedule must be one of"),
        ({"warmup_steps": 100}, "need trainer.lr_schedule=linear, cosine or inverse_sqrt"),
        ({"lr_schedule": "cosine"}, "needs 0 <= trainer.warmup_steps < trainer.lr_decay_steps"),
        (
            {"lr_schedule": "linear", "warmup_steps": 50, "lr_decay_steps": 50},
            "lr_decay_steps",
        ),
        ({"lr_schedule": "inverse_sqrt"}, "inverse_sqrt needs trainer.warmup_steps >= 1"),
        (
            {"lr_schedule": "inverse_sqrt", "warmup_steps": 10, "lr_decay_steps": 50},
            "no trainer.lr_decay_steps",
        ),
    ],
)
def test_inconsistent_schedule_settings_are_refused(overrides: dict, message: str) -> None:
    optimizer = torch.optim.Adam(torch.nn.Linear(1, 1).parameters())
    with pytest.raises(ValueError, match=message):
        LearningRateSchedule(optimizer, trainer_config(**overrides))
