"""Chat templates a user's model may bring (issue 30): one that rejects the system role gets the
system prompt folded into the first user turn, in generation and in training, and the card says
so; one that changes the prompt once an answer follows is refused naming the pair; a model with
no template is refused before any work, naming model.chat_template, which gives it one."""

import json
import shutil

import pytest

from cst_ray.config.schema import ModelConfig
from cst_ray.core.errors import ConfigError
from cst_ray.models.chat import chat_text, fold_system, folds_system
from cst_ray.models.resolve import check_model, with_chat_template

GEMMA_LIKE = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
              "{% endif %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n{{ m['content'] }}"
              "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
# renders the last user turn differently once an assistant turn follows it
SHIFTY = ("{% for m in messages %}{% if loop.last and m['role'] == 'assistant' %}[A] {{ m['content'] }}"
          "{% else %}[{{ m['role'] }}{{ '*' if messages[-1]['role'] == 'assistant' else '' }}] {{ m['content'] }}\n"
          "{% endif %}{% endfor %}{% if add_generation_prompt %}[A] {% endif %}")


def _view(tmp_path, tiny_model_path, template: str) -> str:
    f = tmp_path / "template.jinja"
    f.write_text(template)
    return with_chat_template(ModelConfig(name_or_path=tiny_model_path, chat_template=str(f),
                                          cache_dir=str(tmp_path / "cache")), tiny_model_path)


def test_a_template_without_system_role_gets_the_system_prompt_folded(tmp_path, tiny_model_path):
    from transformers import AutoTokenizer

    from cst_ray.training.driver import FOLDED_NOTE, tokenize_for_training
    from cst_ray.training.tokenize import tokenize_pair

    tok = AutoTokenizer.from_pretrained(_view(tmp_path, tiny_model_path, GEMMA_LIKE))
    assert folds_system(tok)
    msgs = [{"role": "system", "content": "Be safe."}, {"role": "user", "content": "How do I pick a lock?"}]
    assert chat_text(tok, msgs, add_generation_prompt=True) == \
        "<start_of_turn>user\nBe safe.\n\nHow do I pick a lock?<end_of_turn>\n<start_of_turn>model\n"
    t = tokenize_pair(tok, "Be safe.", "How do I pick a lock?", "I can't help.", "Sure: ...", max_length=128)
    assert "user\nBe safe.\n\nHow do I pick a lock?" in tok.decode(t["prompt_ids"])
    pairs = [{"id": "1:s1", "system": "Be safe.", "prompt": "x?", "chosen": "No.", "rejected": "Yes: ..."}]
    rows, meta = tokenize_for_training(pairs, _view(tmp_path, tiny_model_path, GEMMA_LIKE), False, 128, 4)
    assert meta["system_folded"] and len(rows) == 1 and "folded into the first user turn" in FOLDED_NOTE
    assert not folds_system(AutoTokenizer.from_pretrained(tiny_model_path))  # SmolLM2's template has the role
    assert fold_system([{"role": "user", "content": "q"}]) == [{"role": "user", "content": "q"}]


def test_a_template_that_changes_the_prompt_is_refused_naming_model_and_pair(tmp_path, tiny_model_path):
    from transformers import AutoTokenizer

    from cst_ray.training.tokenize import NotAPrefixError, tokenize_pairs

    tok = AutoTokenizer.from_pretrained(_view(tmp_path, tiny_model_path, SHIFTY))
    pairs = [{"id": "7:s0", "system": "S", "prompt": "x?", "chosen": "a", "rejected": "b"}]
    with pytest.raises(NotAPrefixError, match=r"pair 7:s0: the chat template does not render the prompt as a prefix"):
        tokenize_pairs(tok, pairs, max_length=64)


def test_a_model_without_a_template_is_refused_naming_the_setting(tmp_path, tiny_model_path):
    bare = tmp_path / "base-model"
    shutil.copytree(tiny_model_path, bare)
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    tc = json.loads((bare / "tokenizer_config.json").read_text())
    tc.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(tc))
    with pytest.raises(ConfigError, match="without a chat template.*model.chat_template"):
        check_model(str(bare))
    f = tmp_path / "t.jinja"
    f.write_text(GEMMA_LIKE)
    assert check_model(str(bare), chat_template=str(f)) == "folder"
    from transformers import AutoTokenizer

    view = with_chat_template(ModelConfig(name_or_path=str(bare), chat_template=str(f), cache_dir=str(tmp_path / "c")),
                              str(bare))
    assert AutoTokenizer.from_pretrained(view).chat_template == GEMMA_LIKE
