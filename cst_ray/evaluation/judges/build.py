"""`build_judge`: a judge by name (`eval.judge`), with its files and engine settings."""

from __future__ import annotations

from cst_ray.evaluation.judges.base import Judge
from cst_ray.evaluation.judges.classifier import ClassifierJudge
from cst_ray.evaluation.judges.finetuned import FinetunedJudge
from cst_ray.evaluation.judges.llm import CascadeJudge, LLMJudge
from cst_ray.evaluation.judges.refusal import RefusalJudge

JUDGES = ("refusal", "classifier", "finetuned", "llm", "cascade")


def build_judge(name: str, *, path: str = "", train_pairs: list[str] = (), s1: str = "", s0: str = "",
                model_path: str = "", engine=None, trust_remote_code: bool = False, question: str = "help") -> Judge:
    """`path`: a trained judge folder (classifier, finetuned); without one, the default folder
    for the shipped data plus `train_pairs` (judges.folders). A judge never trains itself: a
    folder without a trained judge raises JudgeNotTrainedError with the `cst-ray train-judge`
    line that trains one (s1/s0: the pair files' safe and uncensored system prompts, for that
    line; "" = cst-ray's defaults). `model_path` + `engine` + `question`: the llm and cascade judges."""
    if name == "refusal":
        return RefusalJudge()
    if name == "classifier":
        return ClassifierJudge(path, train_pairs=list(train_pairs), s1=s1)
    if name == "finetuned":
        return FinetunedJudge(path, train_pairs=list(train_pairs), s1=s1, s0=s0)
    if name in ("llm", "cascade"):
        if not model_path or engine is None:
            raise ValueError(f"the {name} judge needs a model path and an engine config")
        llm = LLMJudge(model_path, engine, trust_remote_code=trust_remote_code, question=question)
        return llm if name == "llm" else CascadeJudge(llm)
    raise ValueError(f"unknown judge {name!r} (known: {', '.join(JUDGES)})")
