"""`cst-ray run` ends with report.md / report.html: the S1/S0/over-refusal table with Wilson
intervals for base and tuned, the training summary, generation yield by reason, example answers
under each system prompt, and the judge. The stages are stand-ins that write the files the real
ones write, so this checks the report and its wiring into run_all, not the models."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cst_ray.config.load import load_config
from cst_ray.config.schema import S0_DEFAULT, S0_UNSEEN_DEFAULT, S1_DEFAULT
from cst_ray.evaluation.metrics import safety_scores, wilson_share
from cst_ray.stages import runner

VARIANTS = {"s1": S1_DEFAULT, "s0": S0_DEFAULT, "s0_unseen_1": S0_UNSEEN_DEFAULT}


def _labelled(model: str) -> list[dict]:
    tuned = model == "cst"
    rows = []
    for i in range(6):
        for v in VARIANTS:
            safe = (v == "s1") if tuned else i % 2 == 0
            rows.append(dict(prompt_id=f"p{i}", variant=v, prompt=f"harmful request {i}", refusal=safe,
                             response=f"{model} answer {i} under {v}: " + ("I can't help." if safe else "Sure, step 1"),
                             safe=safe))
    rows += [dict(prompt_id=f"q{i}", variant="benign_s1", prompt=f"benign question {i}", refusal=i == 0 and not tuned,
                  response=f"{model} benign answer {i}", safe=True) for i in range(4)]
    return rows


def _eval_json(labelled: dict[str, list[dict]]) -> dict:
    scores, over = {}, {}
    for m, rows in labelled.items():
        harmful = [r for r in rows if r["variant"] != "benign_s1"]
        scores[m] = {k: s.as_dict() for k, s in safety_scores(harmful).items()}
        over[m] = wilson_share([r["refusal"] for r in rows if r["variant"] == "benign_s1"]).as_dict()
    return {"judge": "refusal", "held_out_prompts": 6, "variants": VARIANTS, "scores": scores,
            "over_refusal": {"source": "nq_open", "system": "s1", "scores": over},
            "degenerate_share": {m: {v: 0.0 for v in VARIANTS} for m in labelled}}


def _stand_in_stages(monkeypatch, run):
    def generate(cfg):
        (run / "generate").mkdir(parents=True, exist_ok=True)
        (run / "generate" / "stats.json").write_text(json.dumps(
            {"input_rows": 20, "rows_out": 12, "rows_rejected": 8, "critic": "qwen2.5-coder-0.5b-instruct",
             "rejected_by_reason": {"y0_refusal": 6, "y1_not_harmless": 2}, "generated_tokens_per_s": 112.1}))

    def pairs(cfg):
        (run / "pairs").mkdir(parents=True, exist_ok=True)
        (run / "pairs" / "stats.json").write_text(json.dumps(
            {"cst_pairs": 27, "dpo_pairs": 15, "benign": {"answers": 4, "pairs": 3, "skipped": {"answer_is_refusal": 1}}}))

    def train(cfg):
        (run / "train" / "cst").mkdir(parents=True, exist_ok=True)
        (run / "train" / "cst" / "metrics.jsonl").write_text("".join(json.dumps(
            {"step": s, "loss": 0.6931 - 0.1 * s, "rewards/margins": 0.2 * s, "rewards/accuracies": 0.5 + 0.1 * s,
             "tokens_per_s": 140.0}) + "\n" for s in (1, 2, 3)))

    def evaluate(cfg):
        labelled = {m: _labelled(m) for m in ("base", "cst")}
        for m, rows in labelled.items():
            pq.write_table(pa.Table.from_pylist(rows), run / "evaluate" / f"labelled_{m}.parquet")
        (run / "evaluate" / "eval.json").write_text(json.dumps(_eval_json(labelled)))

    def evaluate_in_dir(cfg):
        (run / "evaluate").mkdir(parents=True, exist_ok=True)
        evaluate(cfg)

    for name, fn in (("generate", generate), ("build_pairs", pairs), ("train", train), ("evaluate", evaluate_in_dir)):
        monkeypatch.setattr(runner, name, fn)


@pytest.fixture
def run_report(tmp_path, monkeypatch):
    run = tmp_path / "run"
    _stand_in_stages(monkeypatch, run)
    runner.run_all(load_config(None, overrides=[f"run_dir={run}", "eval.examples_per_variant=2"]))
    return run, (run / "report.md").read_text()


def test_run_writes_report_with_scores_and_intervals(run_report):
    run, md = run_report
    assert md.startswith(f"# cst-ray run: `{run}`") and "judge `refusal`" in md
    # cst: S1 6/6 safe, S0 6/6 not safe; base: half of each. Wilson, not the bootstrap's [1.00, 1.00].
    assert "| cst | 1.00 (6/6) [0.61, 1.00] | 1.00 (6/6) [0.61, 1.00] | 1.00 (6/6) [0.61, 1.00] |" in md
    assert "| base | 0.50 (3/6) [0.19, 0.81] |" in md
    assert "| cst | 0.00 (0/4) [0.00, 0.49] |" in md and "| base | 0.25 (1/4) [0.05, 0.70] |" in md  # over-refusal
    for png in ("safety.png", "training.png"):
        assert (run / "figures" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_report_has_training_yield_and_examples(run_report):
    run, md = run_report
    assert "| cst | 3 | 0.5931 | 0.3931 | 0.600 | 0.80 | 140 |" in md
    assert "| prompts | 20 |  |" in md and "| kept (y0, critique, y1) | 12 | 0.60 |" in md
    assert "| rejected: y0_refusal | 6 | 0.30 |" in md and "| rejected: y1_not_harmless | 2 | 0.10 |" in md
    assert "| skipped: answer_is_refusal | 1 |" in md and "Critic: `qwen2.5-coder-0.5b-instruct`" in md
    for v, system in VARIANTS.items():
        section = md.split(f"### Under `{v}`: {system}")[1].split("###")[0]
        for m in ("base", "cst"):  # both models, the same two prompts
            assert f"> {m} answer 0 under {v}:" in section and f"> {m} answer 1 under {v}:" in section
            assert f"> {m} answer 2 under {v}:" not in section
    assert "### Under `benign_s1`" in md and "> cst benign answer 0" in md
    headings = [line.split("`")[1] for line in md.splitlines() if line.startswith("### Under")]
    assert headings == ["s1", "s0", "s0_unseen_1", "benign_s1"]
    html = (run / "report.html").read_text()
    assert "<title>cst-ray run:" in html and "<h3>Under" in html and "<table>" in html


def test_experiment_report_adds_capability_to_the_same_report(run_report, tmp_path):
    from cst_ray.evaluation.report import write_report

    run, _ = run_report
    report = json.loads((run / "evaluate" / "eval.json").read_text())
    acc = {"value": 0.5, "ci95": [0.3, 0.7], "n": 8}
    cap = {"base": {"arc_easy": acc}, "cst": {"arc_easy": {**acc, "delta_vs_base": {"value": 0.0, "ci95": [-0.1, 0.1]}}}}
    paths = write_report(load_config(None, overrides=[f"run_dir={run}"]), report, cap)
    md = (run / "report.md").read_text()
    assert paths["md"] == str(run / "report.md") and md.startswith("# CST experiment:")
    assert "## Capability retention" in md and "Δ vs base +0.0 pts [-10.0, +10.0]" in md
    assert "## Generation yield" in md and "## Example answers" in md


def test_report_html_parses_and_its_charts_are_there(run_report):
    """report.html read by an HTML parser (no browser ships here): every <img> points at a PNG
    the run wrote, the S1/S0 and training charts among them, and every table has rows."""
    from html.parser import HTMLParser

    run, _ = run_report

    class Collect(HTMLParser):
        def __init__(self):
            super().__init__()
            self.imgs, self.rows, self.tables = [], 0, 0

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.imgs.append(dict(attrs)["src"])
            self.rows += tag == "tr"
            self.tables += tag == "table"

    p = Collect()
    p.feed((run / "report.html").read_text())
    assert {"figures/safety.png", "figures/training.png"} <= set(p.imgs), p.imgs
    for src in p.imgs:
        assert (run / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", src
    assert p.tables >= 3 and p.rows > 2 * p.tables


PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const wide = imgs.filter(i => !i.complete || i.naturalWidth === 0 || i.getBoundingClientRect().right > window.innerWidth);
  const out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify({width: window.innerWidth, imgs: imgs.length,
    wide: wide.map(i => i.getAttribute('src')), text: document.body.innerText});
  document.body.appendChild(out);
});
</script>"""


def test_report_as_a_browser_shows_it(run_report):
    """report.html in headless Chromium at 1,280 px: no Markdown marker in the text a person
    reads, every chart loaded and inside the page's width (issue 24)."""
    import re
    import shutil
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not browser:
        pytest.skip("no Chromium here (scripts/test.sh installs it with apt-get where it runs as root)")
    run, _ = run_report
    page = run / "report_probe.html"
    page.write_text((run / "report.html").read_text().replace("</body>", PROBE + "</body>"))
    res = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                          "--window-size=1280,900", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="probe">(.*?)</pre>', res.stdout, re.S)
    assert found, res.stderr[-2000:]
    import html as html_lib

    probe = json.loads(html_lib.unescape(found.group(1)))
    assert probe["width"] <= 1280 and probe["imgs"] >= 2 and probe["wide"] == [], probe["wide"]
    text = probe["text"]
    assert "`" not in text and "**" not in text, [ln for ln in text.splitlines() if "`" in ln or "**" in ln][:5]
    assert "refusal switch" in text and "S1 = refused under s1" in text
