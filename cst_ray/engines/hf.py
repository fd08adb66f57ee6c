"""The Hugging Face engine: batched `generate` with left padding; the fallback without vLLM."""

from __future__ import annotations

import threading

from cst_ray.config.schema import EngineConfig
from cst_ray.core.precision import resolve_dtype
from cst_ray.engines.base import Completion, Engine, has_cuda
from cst_ray.models.chat import chat_text


class HFEngine(Engine):
    """Batched `transformers` generate with left padding, for models vLLM cannot serve."""

    def __init__(self, model_path: str, cfg: EngineConfig, *, trust_remote_code: bool = False):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_path = model_path
        self.cfg = cfg
        self.device = "cuda" if has_cuda() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        name = resolve_dtype(cfg.dtype, self.device)
        dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]
        self.model = AutoModelForCausalLM.from_pretrained(
            model_path, dtype=dtype, trust_remote_code=trust_remote_code
        ).to(self.device)
        self.model.eval()
        torch.manual_seed(cfg.seed)
        self._lock = threading.Lock()  # concurrent callers (batches in flight on one actor) take turns

    def chat(self, conversations, *, max_new_tokens=None, temperature=None):
        with self._lock:
            return self._chat(conversations, max_new_tokens=max_new_tokens, temperature=temperature)

    def _chat(self, conversations, *, max_new_tokens=None, temperature=None):
        import torch

        temp = self.cfg.temperature if temperature is None else temperature
        max_new = max_new_tokens or self.cfg.max_new_tokens
        eos_ids = {self.tokenizer.eos_token_id}
        res: list[Completion] = []
        bs = self.cfg.hf_batch_size
        for start in range(0, len(conversations), bs):
            chunk = conversations[start : start + bs]
            texts = [chat_text(self.tokenizer, c, add_generation_prompt=True) for c in chunk]
            enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            gen_kwargs = dict(max_new_tokens=max_new, pad_token_id=self.tokenizer.pad_token_id,
                              repetition_penalty=self.cfg.repetition_penalty)
            if temp > 0:
                gen_kwargs.update(do_sample=True, temperature=temp, top_p=self.cfg.top_p)
            else:
                gen_kwargs.update(do_sample=False)
            with torch.inference_mode():
                out = self.model.generate(**enc, **gen_kwargs)
            new = out[:, enc["input_ids"].shape[1] :]
            prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
            for row, plen in zip(new.tolist(), prompt_lens):
                n = len(row)
                stopped = False
                for j, t in enumerate(row):
                    if t in eos_ids:
                        n, stopped = j + 1, True
                        break
                toks = row[:n]
                text = self.tokenizer.decode([t for t in toks if t not in eos_ids], skip_special_tokens=True)
                res.append(Completion(text=text, prompt_tokens=int(plen), completion_tokens=n,
                                      finish_reason="stop" if stopped else "length"))
        return res
