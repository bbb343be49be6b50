"""The explorer as a person uses it: ``scripts/explore.py`` serves two checkpoints on a free
loopback port, a headless Chromium types sentences, clicks and slides, and Ctrl-C stops it.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them); Selenium is
given the driver's path, so nothing is downloaded.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seq2seq.config.schema import PROJECT_ROOT

pytestmark = pytest.mark.slow

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if BROWSER is None or DRIVER is None:
    pytest.skip(
        "no headless browser: install Debian's chromium and chromium-driver "
        "(apt-get install -y chromium chromium-driver)",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402 (only where a browser exists)
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

WAIT_SECONDS = 60  # a loaded 2-core machine; a quiet one answers in about a second
STILL_SECONDS = 1.0  # an element that has not moved for this long is where a click will land


# Runs scripts/explore.py with an audit hook that logs every socket connection and name lookup
# to a host outside the loopback: the app must make none (no analytics, no version check).
NETWORK_WATCH = """
import runpy, sys
log = open(sys.argv.pop(1), "a", buffering=1)
LOCAL = ("127.", "::1", "localhost", "0.0.0.0")
def watch(event, args):
    if event == "socket.connect" and isinstance(args[1], tuple):
        if not str(args[1][0]).startswith(LOCAL):
            log.write(f"connect {args[1]}\\n")
    elif event == "socket.getaddrinfo" and args[0] is not None:
        host = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
        if not host.startswith(LOCAL):
            log.write(f"lookup {host}\\n")
sys.addaudithook(watch)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    temp_root: Path  # the TMPDIR the app was given: its temporary directory lives here
    workdir: Path  # the app's working directory, which it must leave untouched
    network_log: Path  # connections and lookups of hosts outside the loopback, one a line
    checkpoints: list[Path]  # served in this order: column k shows checkpoints[k]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(checkpoints: list[Path], tmp: Path) -> Server:
    temp_root, workdir = tmp / "tmp", tmp / "cwd"
    temp_root.mkdir()
    workdir.mkdir()
    output, network_log = tmp / "explore.log", tmp / "network.log"
    port = free_port()
    script = str(PROJECT_ROOT / "scripts" / "explore.py")
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-c", NETWORK_WATCH, str(network_log), script]
            + [*map(str, checkpoints), "--port", str(port)],
            cwd=workdir,
            env={**os.environ, "TMPDIR": str(temp_root)},
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 3 * WAIT_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        for line in output.read_text(encoding="utf-8").splitlines():
            if "http://" in line:  # the app prints the URL once it serves
                url = line.split("open ", 1)[1].split()[0]
                assert url == f"http://127.0.0.1:{port}", line
                return Server(process, url, temp_root, workdir, network_log, checkpoints)
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"the explorer did not serve:\n{output.read_text(encoding='utf-8')}")


@pytest.fixture(scope="module")
def server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from test_training import run

    tmp = tmp_path_factory.mktemp("explorer-server")
    distracted = run(tmp, "distracted", "model=distracted", "trainer.max_steps=4")
    transformer = run(tmp, "transformer", "model=transformer", "trainer.max_steps=4")
    checkpoints = [
        tiny_checkpoint,
        *(d / "checkpoints" / "best.pt" for d in (distracted, transformer)),
    ]
    served = start_server(checkpoints, tmp)
    yield served
    if served.process.poll() is None:
        served.process.kill()
        served.process.wait()


def chrome(url: str, width: int = 1600, height: int = 2000) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.get(url)
    return driver


@pytest.fixture(scope="module")
def browser(server: Server) -> Iterator[webdriver.Chrome]:
    driver = chrome(server.url)
    yield driver
    driver.quit()


def wait_for(driver: webdriver.Chrome, condition, message: str):  # noqa: ANN001, ANN201
    # Gradio redraws components after each answer: an element found a moment ago may be gone.
    waiting = WebDriverWait(
        driver, WAIT_SECONDS, ignored_exceptions=[StaleElementReferenceException]
    )
    return waiting.until(condition, message)


def source_box(driver: webdriver.Chrome) -> WebElement:
    return wait_for(
        driver,
        lambda d: d.find_element(By.CSS_SELECTOR, "#source textarea, #source input"),
        "no sentence box",
    )


def translate(driver: webdriver.Chrome, sentence: str) -> None:
    box = source_box(driver)
    box.clear()
    box.send_keys(sentence)
    box.send_keys(Keys.ENTER)


def text_of(driver: webdriver.Chrome, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def test_typing_a_sentence_shows_translations_and_heatmap(
    browser: webdriver.Chrome, server: Server
) -> None:
    translate(browser, "我爱你。")
    wait_for(browser, lambda d: "我爱你。 in" in text_of(d, "translation-0"), "no translation")
    wait_for(browser, lambda d: "我爱你。 in" in text_of(d, "translation-1"), "no 2nd translation")
    assert "love" in text_of(browser, "translation-0")
    # The heatmap is drawn by Plotly with the source pieces as its column labels.
    heatmap = wait_for(
        browser,
        lambda d: d.find_element(By.CSS_SELECTOR, "#heatmap-0 .js-plotly-plot .hm"),
        "no heatmap",
    )
    assert heatmap.is_displayed()
    labels = browser.find_element(By.CSS_SELECTOR, "#heatmap-0 .xaxislayer-above").text
    assert "你" in labels and "</s>" in labels
    notice = wait_for(browser, lambda d: d.find_element(By.ID, "notice-1"), "no notice")
    assert "same context C" in notice.text
    assert not browser.find_elements(By.CSS_SELECTOR, "#heatmap-1 .js-plotly-plot")
    # Stepping: the slider moves to output position 1, and the step view follows.
    assert "Position 0" in text_of(browser, "step-0")
    slider = browser.find_element(By.CSS_SELECTOR, "#position-0 input[type=range]")
    slider.send_keys(Keys.ARROW_RIGHT)
    wait_for(browser, lambda d: "Position 1" in text_of(d, "step-0"), "the step did not move")
    assert browser.find_element(By.CSS_SELECTOR, "#step-plot-0 .js-plotly-plot").is_displayed()


def test_hovering_a_cell_names_source_output_and_weight(browser: webdriver.Chrome) -> None:
    translate(browser, "我爱你。")
    wait_for(browser, lambda d: "score" in text_of(d, "translation-0"), "no translation")

    def hover_text(driver: webdriver.Chrome) -> str:
        """Move onto the heatmap's cells (from just beside them: a fresh mouse move) and read
        Plotly's hover label, once the redrawn plot answers."""
        cells = driver.find_element(By.CSS_SELECTOR, "#heatmap-0 .js-plotly-plot .nsewdrag")
        actions = webdriver.ActionChains(driver)
        actions.move_to_element_with_offset(cells, 0, -cells.size["height"] // 2 - 5)
        actions.move_to_element(cells).perform()
        labels = driver.find_elements(By.CSS_SELECTOR, "#heatmap-0 .hovertext")
        return labels[0].text if labels else ""

    hover = wait_for(browser, hover_text, "no hover label on the heatmap")
    assert "source:" in hover and "target:" in hover and "weight:" in hover


def test_beam_nbest_shows_the_chosen_translation(browser: webdriver.Chrome) -> None:
    browser.find_element(By.CSS_SELECTOR, "#search input[value=beam]").click()
    browser.find_element(By.CSS_SELECTOR, "#nbest input[type=range]").send_keys(Keys.ARROW_RIGHT)
    translate(browser, "你爱我。")
    wait_for(browser, lambda d: "你爱我。 in" in text_of(d, "translation-0"), "no translation")
    rows = "#heatmap-0 .yaxislayer-above"
    best_rows = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, rows).text, "no map")
    click_when_still(browser, By.CSS_SELECTOR, "#choice-0 input[value='2']")
    wait_for(
        browser,
        lambda d: d.find_element(By.CSS_SELECTOR, rows).text not in ("", best_rows),
        "the heatmap still shows the best translation",
    )
    browser.find_element(By.CSS_SELECTOR, "#search input[value=greedy]").click()


def test_example_buttons_and_download(browser: webdriver.Chrome, server: Server) -> None:
    button = browser.find_element(By.XPATH, "//button[contains(., '你爱我。')]")
    button.click()
    wait_for(browser, lambda d: source_box(d).get_attribute("value") == "你爱我。", "no example")
    wait_for(browser, lambda d: "你爱我。 in" in text_of(d, "translation-0"), "no translation")

    def offered(d: webdriver.Chrome) -> dict[str, str]:
        return {a.get_attribute("download"): a.get_attribute("href") for a in downloads(d)}

    click_when_still(browser, By.XPATH, "//button[contains(., 'Download this matrix')]")
    links = wait_for(browser, offered, "no files to download after the click")
    assert set(links) == {"alignment-1-pieces.npz", "alignment-1-pieces.png"}
    with urllib.request.urlopen(links["alignment-1-pieces.npz"], timeout=WAIT_SECONDS) as answer:
        matrix = np.load(io.BytesIO(answer.read()))
    assert "".join(matrix["source_labels"]) == "▁你爱我。</s>"  # pieces of the example
    np.testing.assert_allclose(matrix["weights"].sum(axis=1), 1.0, atol=1e-5)
    with urllib.request.urlopen(links["alignment-1-pieces.png"], timeout=WAIT_SECONDS) as answer:
        assert answer.read(8) == b"\x89PNG\r\n\x1a\n"
    saved = list(server.temp_root.rglob("alignment-1-pieces.npz"))
    assert saved, "the matrix was not written under the app's temporary directory"


@pytest.mark.parametrize("column", [0, 2], ids=["rnn", "transformer"])
def test_the_page_answers_what_translate_py_answers(
    browser: webdriver.Chrome, server: Server, column: int, tmp_path: Path
) -> None:
    """The same checkpoint and settings (greedy, fp32): the page's translation and its
    downloaded matrix are translate.py's and its --alignments file's."""
    sentence = "我爱你。"
    translate(browser, sentence)
    box = f"translation-{column}"
    wait_for(browser, lambda d: f"{sentence} in" in text_of(d, box), "no translation")
    name = f"alignment-{column + 1}-pieces.npz"

    def matrix_link(d: webdriver.Chrome) -> str | None:
        links = {
            a.get_attribute("download"): a.get_attribute("href")
            for a in d.find_elements(By.CSS_SELECTOR, f"#files-{column} a[download]")
        }
        return links.get(name)

    earlier = matrix_link(browser)  # an earlier sentence's matrix may still be offered

    def offered(d: webdriver.Chrome) -> str | None:
        link = matrix_link(d)
        return link if link != earlier else None

    click_when_still(
        browser, By.XPATH, f"(//button[contains(., 'Download this matrix')])[{column + 1}]"
    )
    link = wait_for(browser, offered, "no new matrix to download")
    with urllib.request.urlopen(link, timeout=WAIT_SECONDS) as answer:
        page = np.load(io.BytesIO(answer.read()))

    # As the explorer runs: fp32 (it shows probabilities to read), one thread, one sentence a
    # batch, so the same products are summed in the same order and even an untrained model's
    # near-ties (the 4-update Transformer) come out the same.
    command = [sys.executable, str(PROJECT_ROOT / "scripts" / "translate.py")]
    command += [str(server.checkpoints[column]), "--alignments", str(tmp_path)]
    command += ["--precision", "fp32", "--batch-size", "1"]
    done = subprocess.run(
        command,
        input=sentence + "\n",
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    (line,) = done.stdout.splitlines()
    shown = text_of(browser, box).splitlines()[0]  # "<translation> score <s>" (a list item)
    expected = " ".join(line.split()) or "(empty)"  # HTML shows one space; "" as (empty)
    assert shown.rsplit(" score ", 1)[0] == expected
    (written,) = tmp_path.glob("*.npz")
    script = np.load(written)
    for labels in ("source_labels", "target_labels"):
        assert list(page[labels]) == list(script[labels])
    np.testing.assert_allclose(page["weights"], script["weights"], rtol=0, atol=1e-5)


# The screenshots in README.md and docs/explorer.md are this test's own, made from real
# checkpoints: SEQ2SEQ_EXPLORER_SHOTS=docs SEQ2SEQ_EXPLORER_SHOT_CHECKPOINTS=attention.pt,
# distracted.pt,transformer.pt pytest tests/test_explorer_browser.py -k screenshots. Without
# them it takes the same pictures of the tiny checkpoints into a temporary directory.
LONG_SENTENCE = "汤姆把那个大野餐篮子放在他旁边的乘客座位上。"  # Tatoeba dev, 22 characters


def test_screenshots_of_attention_beside_the_distracted_model_and_of_a_transformer(
    server: Server, tmp_path: Path
) -> None:
    out = Path(os.environ.get("SEQ2SEQ_EXPLORER_SHOTS") or tmp_path / "shots")
    out.mkdir(parents=True, exist_ok=True)
    named = os.environ.get("SEQ2SEQ_EXPLORER_SHOT_CHECKPOINTS")
    attention, distracted, transformer = (
        [Path(path) for path in named.split(",")] if named else server.checkpoints
    )
    pictures = [
        ([attention, distracted], "我爱你。", "explorer.png", "heatmap-0"),
        ([attention, distracted], LONG_SENTENCE, "explorer-long.png", "heatmap-0"),
        ([transformer], LONG_SENTENCE, "explorer-transformer.png", "step-plot-0"),
    ]
    for checkpoints, sentence, name, last in pictures:
        picture = screenshot(checkpoints, sentence, last, tmp_path / name)
        # 256 colours are plenty for a page of text and blue heatmaps: a third of the bytes.
        picture.convert("RGB").quantize(256).save(out / name, optimize=True)
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert picture.width >= 1000 and picture.height >= 500, (name, picture.size)


def screenshot(checkpoints: list[Path], sentence: str, last: str, tmp: Path) -> Image.Image:
    """The page serving ``checkpoints`` after translating ``sentence``, from its top to the
    bottom of the element ``last``, once nothing on it moves."""
    tmp.mkdir()
    served = start_server(checkpoints, tmp)
    driver = chrome(served.url, 1500, 1400)
    try:
        translate(driver, sentence)
        wait_for(driver, lambda d: f"{sentence} in" in text_of(d, "translation-0"), "no answer")
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1500, height + 100)  # the whole page in one picture
        wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, ".js-plotly-plot"), "no plot")
        bottom = standing_still(driver, By.ID, last).rect
        png = driver.get_screenshot_as_png()
    finally:
        driver.quit()
        served.process.kill()
        served.process.wait()
    picture = Image.open(io.BytesIO(png))
    return picture.crop((0, 0, picture.width, int(bottom["y"] + bottom["height"] + 20)))


def standing_still(driver: webdriver.Chrome, by: str, selector: str) -> WebElement:
    """The element, once the page has not moved it for ``STILL_SECONDS``."""
    last: dict[str, float] = {}
    since = time.monotonic()

    def still(d: webdriver.Chrome) -> WebElement | None:
        nonlocal last, since
        element = d.find_element(by, selector)
        rect = element.rect
        if rect != last:
            last, since = rect, time.monotonic()
            return None
        return element if time.monotonic() - since >= STILL_SECONDS else None

    return wait_for(driver, still, f"{selector} kept moving")


def click_when_still(driver: webdriver.Chrome, by: str, selector: str) -> None:
    """Click the element once the page has stopped moving it.

    After an answer Gradio shows the text first and Plotly draws the heatmaps a moment later,
    pushing everything below them down (the download button moved 254 px about a second after
    the translation appeared): a click aimed at the old place lands on something else.
    """
    standing_still(driver, by, selector).click()


def downloads(driver: webdriver.Chrome) -> list[WebElement]:
    return driver.find_elements(By.CSS_SELECTOR, "#files-0 a[download]")


def test_over_long_input_is_refused_with_a_message(browser: webdriver.Chrome) -> None:
    translate(browser, "我爱你。" * 60)
    wait_for(
        browser,
        lambda d: "data.max_length" in d.find_element(By.TAG_NAME, "body").text,
        "no message about the length cap",
    )


def test_page_reaches_nothing_but_the_app(browser: webdriver.Chrome, server: Server) -> None:
    requested = set()
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            requested.add(message["params"]["request"]["url"])
    assert any(url.startswith(server.url) for url in requested)
    outside = {u for u in requested if not u.startswith((server.url, "data:", "blob:"))}
    assert not outside, f"the page asked other hosts: {sorted(outside)[:5]}"


def test_a_taken_port_is_a_one_line_error(server: Server, tiny_checkpoint: Path) -> None:
    port = server.url.rsplit(":", 1)[1]
    script = str(PROJECT_ROOT / "scripts" / "explore.py")
    finished = subprocess.run(
        [sys.executable, script, str(tiny_checkpoint), "--port", port],
        capture_output=True,
        text=True,
        timeout=3 * WAIT_SECONDS,
        env={**os.environ, "TMPDIR": str(server.temp_root)},
    )
    assert finished.returncode == 2
    (error,) = [line for line in finished.stderr.splitlines() if "error" in line]
    assert error.endswith(f"127.0.0.1:{port} is taken (or not ours to use): try another --port")


def test_kill_stops_cleanly_too(tiny_checkpoint: Path, tmp_path: Path) -> None:
    other = start_server([tiny_checkpoint], tmp_path)
    other.process.terminate()
    assert other.process.wait(timeout=WAIT_SECONDS) == 143
    assert list(other.temp_root.iterdir()) == [], "the temporary directory was left behind"


def test_ctrl_c_stops_cleanly_and_leaves_no_files(
    browser: webdriver.Chrome, server: Server
) -> None:
    server.process.send_signal(signal.SIGINT)
    try:
        code = server.process.wait(timeout=WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        server.process.kill()
        raise
    assert code == 130
    assert list(server.temp_root.iterdir()) == [], "the temporary directory was left behind"
    assert list(server.workdir.iterdir()) == [], "the app wrote into its working directory"
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", int(server.url.rsplit(":", 1)[1]))) != 0
    reached = server.network_log.read_text() if server.network_log.exists() else ""
    assert reached == "", f"the app reached beyond the loopback:\n{reached}"
