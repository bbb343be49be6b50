"""trainer.precision=auto and --precision auto: bf16 where the hardware computes it natively,
else fp32; decided on the machine that trains or decodes, recorded where users look."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from test_training import TINY, run

from seq2seq import device as device_module
from seq2seq.checkpoint import load_checkpoint, save_checkpoint
from seq2seq.cli import evaluate_main
from seq2seq.comparison import comparison_table, load_runs
from seq2seq.device import Support, bf16_support, choose_precision, hardware_summary

CPU = torch.device("cpu")


def cpu_reports(monkeypatch: pytest.MonkeyPatch, avx512_bf16: bool, amx: bool = False) -> None:
    """Make torch's capability queries answer as on another CPU (oneDNN allowed to use it)."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "used"),
    [(True, False, "bf16"), (False, True, "bf16"), (True, True, "bf16"), (False, False, "fp32")],
)
def test_auto_is_bf16_only_on_a_cpu_with_avx512_bf16_or_amx(
    monkeypatch: pytest.MonkeyPatch, avx512_bf16: bool, amx: bool, used: str
) -> None:
    cpu_reports(monkeypatch, avx512_bf16, amx)
    choice = choose_precision("auto", CPU)
    assert (choice.asked, choice.used) == ("auto", used)
    if used == "fp32":
        assert "neither AVX512-BF16 nor AMX" in choice.why


@pytest.mark.parametrize("isa", ["AVX2", "avx512_core", "AVX512_CORE_VNNI"])
def test_auto_is_fp32_where_onednn_is_kept_below_its_bf16_instructions(
    monkeypatch: pytest.MonkeyPatch, isa: str
) -> None:
    cpu_reports(monkeypatch, avx512_bf16=True)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
    assert choose_precision("auto", CPU).used == "fp32"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    assert choose_precision("auto", CPU).used == "bf16"


def test_auto_is_fp32_where_torchs_onednn_has_no_bf16_path(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu_reports(monkeypatch, avx512_bf16=True)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert choose_precision("auto", CPU).used == "fp32"


@pytest.mark.parametrize(("supported", "used"), [(True, "bf16"), (False, "fp32")])
def test_auto_on_a_gpu_follows_its_bf16_support(
    monkeypatch: pytest.MonkeyPatch, supported: bool, used: str
) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "a GPU")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation: supported)
    assert choose_precision("auto", torch.device("cuda")).used == used


def test_an_explicit_16_bit_precision_without_native_support_trains_as_asked_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cpu_reports(monkeypatch, avx512_bf16=False)
    with caplog.at_level(logging.WARNING, logger="seq2seq.device"):
        assert choose_precision("bf16", CPU).used == "bf16"
    (warning,) = caplog.records
    assert "trainer.precision=bf16" in warning.message and "slower" in warning.message
    assert "trainer.precision=auto picks fp32" in warning.message
    caplog.clear()
    cpu_reports(monkeypatch, avx512_bf16=True)
    with caplog.at_level(logging.WARNING, logger="seq2seq.device"):
        assert choose_precision("bf16", CPU).used == "bf16"
        assert choose_precision("fp32", CPU).used == "fp32"
    assert not caplog.records


def test_an_unknown_precision_names_the_setting() -> None:
    with pytest.raises(ValueError, match=r"--precision must be one of \['auto', 'fp32'"):
        choose_precision("fp8", CPU, "--precision")


def test_the_hardware_summary_says_which_cpu_and_which_paths() -> None:
    summary = hardware_summary()
    assert summary["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert summary["native_bf16"] == bf16_support(CPU).native
    assert summary["cpu"] and summary["torch"] == torch.__version__


def mock_native_bf16(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    monkeypatch.setattr(device_module, "bf16_support", lambda device: Support(native, "mocked"))


@pytest.mark.slow
@pytest.mark.parametrize(("native", "used"), [(True, "bf16"), (False, "fp32")])
def test_a_run_records_the_precision_asked_and_used(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    native: bool,
    used: str,
) -> None:
    mock_native_bf16(monkeypatch, native)
    with caplog.at_level(logging.INFO, logger="seq2seq.training.trainer"):
        run_dir = run(tmp_path, "run", "trainer.precision=auto", "trainer.max_steps=3")
    assert f"precision: {used} (asked: auto): mocked" in caplog.messages
    for name in ("best.pt", "last.pt"):
        saved = load_checkpoint(run_dir / "checkpoints" / name)
        assert saved["precision"] == {"asked": "auto", "used": used}
        assert saved["config"]["trainer"]["precision"] == "auto"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["precision"] == {"asked": "auto", "used": used}
    assert metrics["hardware"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert f"| auto → {used} |" in comparison_table(load_runs([run_dir]))


@pytest.mark.slow
def test_a_run_resumed_on_a_cpu_without_native_bf16_continues_in_fp32_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    mock_native_bf16(monkeypatch, True)
    half = run(tmp_path, "half", "trainer.precision=auto", "trainer.max_steps=3")
    mock_native_bf16(monkeypatch, False)
    last = half / "checkpoints" / "last.pt"
    with caplog.at_level(logging.WARNING, logger="seq2seq.training.trainer"):
        resumed = run(tmp_path, "resumed", "trainer.precision=auto", f"trainer.resume={last}")
    assert any("trained in bf16; it continues in fp32" in m for m in caplog.messages)
    assert load_checkpoint(resumed / "checkpoints" / "last.pt")["precision"]["used"] == "fp32"


@pytest.mark.parametrize(("native", "used"), [(True, "bf16"), (False, "fp32")])
def test_a_bf16_checkpoint_decodes_at_what_the_decoding_machine_computes_natively(
    tiny_checkpoint: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    native: bool,
    used: str,
) -> None:
    """Trained in bf16 on an AVX-512 server, decoded on an AVX2 laptop: fp32 there, by default."""
    state = load_checkpoint(tiny_checkpoint)
    state["config"]["trainer"]["precision"] = "bf16"
    state["precision"] = {"asked": "bf16", "used": "bf16"}
    trained_in_bf16 = tmp_path / "bf16.pt"
    save_checkpoint(trained_in_bf16, {k: v for k, v in state.items() if k != "format_version"})
    mock_native_bf16(monkeypatch, native)
    args = [str(trained_in_bf16), str(TINY / "test.tsv"), "--device", "cpu"]
    assert evaluate_main([*args, "--out", str(tmp_path / "out")]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (report["precision_asked"], report["precision"]) == ("auto", used)
    assert report["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert report["native_bf16"] is native
