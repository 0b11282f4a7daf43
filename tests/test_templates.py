"""Tests of llmrec_nb.templates: prompt rendering, built-in templates, Alpaca export, Alpaca / ShareGPT / dataset_info.json reading and bad input."""
import json, re

import pytest

from llmrec_nb.core import DataFormatError
from llmrec_nb.templates import (Instruction, export_alpaca, listwise_instruction, load_alpaca, next_item_instruction,
                                 pairwise_instruction, rating_instruction, render_prompt, render_response, tallrec_instruction,
                                 fit_prompt, fit_prompts, drop_history, HISTORY_SPANS, _n_tokens, load_instructions,
                                 load_sharegpt, load_dataset_info)


@pytest.fixture(scope="module")
def tokenizer():
    pytest.importorskip("transformers")
    from llmrec_nb.llm import bundled_tokenizer
    return bundled_tokenizer("smollm2-135m")


def test_chat_prompt_uses_the_tokenizer_template(tokenizer):
    inst = tallrec_instruction(["Alien (1979)"], ["Cats (1998)"], "Heat (1995)", True)
    p = render_prompt(inst, tokenizer)
    assert p.endswith("<|im_start|>assistant\n")
    assert f"<|im_start|>user\n{inst.instruction}\n\n{inst.input}<|im_end|>" in p
    assert not p.endswith("Yes.") and inst.output == "Yes."  # the answer is never part of the prompt
    with_sys = render_prompt(inst, tokenizer, system="You recommend movies.")
    assert "<|im_start|>system\nYou recommend movies.<|im_end|>" in with_sys
    assert render_prompt(inst, tokenizer, style="alpaca") == render_prompt(inst)
    assert render_response(inst, tokenizer, eos=True) == "Yes." + tokenizer.eos_token


def test_alpaca_prompt_sections():
    inst = Instruction("Do X.", "some input", "out")
    assert render_prompt(inst) == "### Instruction:\nDo X.\n\n### Input:\nsome input\n\n### Response:\n"
    assert render_prompt(Instruction("Do X.")) == "### Instruction:\nDo X.\n\n### Response:\n"
    assert render_prompt(Instruction("", "only input")) == "### Input:\nonly input\n\n### Response:\n"
    assert render_response(inst) == "out"


def test_builtin_templates():
    t = tallrec_instruction(["A (1990)", "B (1991)"], [], "C (1992)", False, id="u1", meta={"user": "u1", "item": "9"})
    assert (t.output, t.task, t.id, t.meta["label"], t.meta["item"]) == ("No.", "tallrec", "u1", 0, "9")
    assert "User Preference:\n- A (1990)\n- B (1991)" in t.input and "User Unpreference:\n(none)" in t.input
    assert t.input.endswith("Target item: C (1992)")
    assert {tallrec_instruction([], [], "x", variant=v).instruction for v in range(3)}.__len__() == 3

    l = listwise_instruction(["A"], ["B", "C", "D"], ["C", "B"], top_n=2, meta={"candidates": ["2", "3", "4"]})
    assert "Candidates:\n1. B\n2. C\n3. D" in l.input and "top 2" in l.instruction
    assert l.output == "1. C\n2. B" and l.meta["candidates"] == ["2", "3", "4"]

    n = next_item_instruction(["A", "B"], "C", candidates=["C", "D"])
    assert n.output == "C" and "Candidates:\n1. C\n2. D" in n.input and n.task == "next_item"
    assert next_item_instruction(["A"]).output == ""

    r = rating_instruction([("A", 5), ("B", 2.5)], "C", 4, scale=(1, 5))
    assert r.output == "4" and "- B: 2.5" in r.input and "1-5" in r.instruction and r.meta["rating"] == 4.0
    assert rating_instruction([], "C", instruction="").instruction == ""


def test_pairwise_and_extra_sections():
    p = pairwise_instruction(["A"], "B", "C", "B", id="u1", meta={"a": "2", "b": "3"})
    assert p.input.endswith("A: B\nB: C") and p.output == "B" and p.task == "pairwise"
    assert pairwise_instruction(["A"], "B", "C").output == ""
    with pytest.raises(ValueError): pairwise_instruction([], "a", "b", "yes")
    extra = {"Most similar user's history": ["Q", "R"], "A recommender's top picks": "R; Q"}
    for inst in (tallrec_instruction(["A"], [], "T", extra=extra), next_item_instruction(["A"], extra=extra),
                 rating_instruction([("A", 3)], "T", extra=extra), pairwise_instruction(["A"], "B", "C", extra=extra)):
        assert "Most similar user's history:\n- Q\n- R\n\nA recommender's top picks:\nR; Q" in inst.input


def test_export_and_load_round_trip(tmp_path):
    insts = [tallrec_instruction(["Amélie (2001)"], ["Ça (2017)"], "Heat (1995)", True, id="u1:3", meta={"item": "7", "cands": [1, 2]}),
             listwise_instruction(["A"], ["B", "C"], "C", id="u2", meta={"candidates": ["b", "c"]}),
             Instruction("", "no description", "x", "u3", "ablation")]
    (tmp_path / "dataset_info.json").write_text(json.dumps({"other": {"file_name": "other.json"}}))
    path = export_alpaca(insts, tmp_path, "ml100k", "train")
    export_alpaca(insts[:1], tmp_path, "ml100k", "test")
    assert path == tmp_path / "ml100k_train.json"
    records = json.loads(path.read_text(encoding="utf-8"))
    assert records[0] == {"instruction": insts[0].instruction, "input": insts[0].input, "output": "Yes."}
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert set(info) == {"other", "ml100k_train", "ml100k_test"}
    assert info["ml100k_train"] == {"file_name": "ml100k_train.json", "columns": {"prompt": "instruction", "query": "input", "response": "output"}}
    side = (tmp_path / "ml100k_train.meta.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(side[1]) == {"id": "u2", "task": "listwise", "meta": {"candidates": ["b", "c"], "history_spans": [[1, 2]]}}
    assert load_alpaca(path) == insts
    # without the sidecar the texts still load
    (tmp_path / "ml100k_test.meta.jsonl").unlink()
    assert [i.to_alpaca() for i in load_alpaca(tmp_path / "ml100k_test.json")] == [insts[0].to_alpaca()]


@pytest.mark.parametrize("content,match", [
    ('{"instruction": "x"}', "not a list"),
    ('[{"instruction": "x", "output": "y"}, {"input": "z"}]', "line 1, field 'instruction': record 2: has no 'instruction'"),
    ('[{"instruction": "x", "output": "y"},\n {"instruction": "x", "output": null}]', "line 2, field 'output': record 2: 'output' is null"),
    ('[{"instruction": "x", "output": ["a", "b"]}]', r"field 'output': record 1: 'output' is \["),
    ('[{"instruction": {"k": 1}, "output": "y"}]', "field 'instruction': record 1"),
    ('[{"instruction": "x", "input": 3, "output": "y"}]', "field 'input': record 1: 'input' is 3"),
    ('[{"instruction": "x", "output": "y", "system": ["Be brief."]}]', r"field 'system': record 1: 'system' is \["),
    ('[{"instruction": "x", "output": "y", "history": [["q", "a"]]}]', "field 'history': record 1: has a non-empty 'history'"),
    ('["just text"]', "record 1: is a str"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('[{"instruction": "x", ', "invalid JSON"),
])
def test_load_alpaca_rejects_bad_files(tmp_path, content, match):
    p = tmp_path / "bad_train.json"; p.write_text(content)
    with pytest.raises(DataFormatError, match=match): load_alpaca(p)


def test_load_alpaca_accepts_empty_extras_and_null_input(tmp_path):
    p = tmp_path / "ok.json"
    p.write_text(json.dumps([{"instruction": "x", "input": None, "output": "y", "system": "", "history": []},
                             {"instruction": "x", "output": "z"}]))
    assert [i.to_alpaca() for i in load_alpaca(p)] == [{"instruction": "x", "input": "", "output": "y"},
                                                        {"instruction": "x", "input": "", "output": "z"}]


def test_load_alpaca_names_a_file_that_is_not_utf8(tmp_path):
    p = tmp_path / "latin1.json"
    p.write_bytes('[{"instruction": "x",\n  "output": "Café"}]'.encode("latin-1"))
    with pytest.raises(DataFormatError, match=r"latin1.json, line 2: byte 0xe9 is not UTF-8"): load_alpaca(p)


def test_load_alpaca_rejects_mismatched_sidecar(tmp_path):
    path = export_alpaca([Instruction("a", "b", "c"), Instruction("d", "e", "f")], tmp_path, "x", "train")
    side = tmp_path / "x_train.meta.jsonl"
    side.write_text(side.read_text().splitlines()[0] + "\n")
    with pytest.raises(DataFormatError, match="1 lines for 2 records"): load_alpaca(path)
    side.write_text("{bad\n{}\n")
    with pytest.raises(DataFormatError, match="invalid JSON"): load_alpaca(path)


def test_export_alpaca_meta_with_numpy_values(tmp_path):
    import numpy as np
    inst = Instruction("a", "b", "c", id="1", task="t",
                       meta={"item": np.int64(7), "candidates": np.array(["3", "4"]), "rating": np.float32(4.5), "seen": {"2", "1"}})
    back = load_alpaca(export_alpaca([inst], tmp_path, "np", "test"))[0].meta
    assert back == {"item": 7, "candidates": ["3", "4"], "rating": 4.5, "seen": ["1", "2"]}
    assert isinstance(back["item"], int) and isinstance(back["candidates"], list)


def test_history_spans_point_at_the_history_entries(tmp_path):
    extra = {"Most similar user's history": ["Q", "R"]}
    cases = [(tallrec_instruction(["A", "B\nC"], ["D"], "T", True, extra=extra), [["- A", "- B C"], ["- D"]]),
             (listwise_instruction(["A", "B"], ["X", "Y"], extra=extra), [["- A", "- B"]]),
             (next_item_instruction(["A"], "C", candidates=["C", "D"], extra=extra), [["- A"]]),
             (rating_instruction([("A", 5), ("B", 2.5)], "T", 4, extra=extra), [["- A: 5", "- B: 2.5"]]),
             (pairwise_instruction(["A", "B", "C"], "X", "Y", extra=extra), [["- A", "- B", "- C"]]),
             (tallrec_instruction([], ["D"], "T"), [["- D"]])]
    for inst, want in cases:
        lines = inst.input.split("\n")
        assert [lines[a:b] for a, b in inst.meta[HISTORY_SPANS]] == want, inst.task
        assert lines[inst.meta[HISTORY_SPANS][0][0] - 1].endswith(":")      # right under its section header
    # the spans survive an Alpaca round trip
    assert load_alpaca(export_alpaca([cases[0][0]], tmp_path, "s"))[0] == cases[0][0]


def test_fit_prompt_keeps_header_instruction_and_target(tokenizer):
    from llmrec_nb.llm import encode
    inst = tallrec_instruction([f"Liked movie number {k} (1990)" for k in range(60)],
                               [f"Disliked movie number {k} (1991)" for k in range(20)], "The Target (1995)", True, id="u:9")
    full = render_prompt(inst, tokenizer)
    for text in (full, render_prompt(inst, tokenizer, style="alpaca")):
        assert _n_tokens(tokenizer, text) == len(encode(tokenizer, [text])[0])     # counted as the scorers encode it
    n_full = len(encode(tokenizer, [full])[0])
    assert fit_prompt(inst, tokenizer, max_tokens=n_full) == (full, 0)
    p, k = fit_prompt(inst, tokenizer, max_tokens=400, reserve=3)
    assert 0 < k < 80 and len(encode(tokenizer, [p])[0]) + 3 <= 400
    # as few entries as possible are dropped: one fewer does not fit
    assert len(encode(tokenizer, [render_prompt(drop_history(inst, k - 1), tokenizer)])[0]) + 3 > 400
    assert p.startswith(full[:full.index(inst.instruction)]) and inst.instruction in p       # chat header and task kept
    assert p.endswith("Target item: The Target (1995)<|im_end|>\n<|im_start|>assistant\n")
    assert "Liked movie number 59 (1990)" in p and "Liked movie number 0 (1990)" not in p      # the newest stay
    assert "Disliked movie number 19 (1991)" in p
    with pytest.raises(ValueError, match="no history entry"): fit_prompt(inst, tokenizer, max_tokens=60)
    prompts, n_short = fit_prompts([inst, tallrec_instruction(["A"], [], "B")], tokenizer, max_tokens=400)
    assert n_short == 1 and prompts[1] == render_prompt(tallrec_instruction(["A"], [], "B"), tokenizer)


def test_fit_prompt_rejects_bad_spans_and_unshortenable_prompts(tokenizer):
    bad = Instruction("q", "one line", "a", id="x", meta={HISTORY_SPANS: [[0, 3]]})
    with pytest.raises(ValueError, match="does not fit"): fit_prompt(bad, tokenizer, max_tokens=2)
    with pytest.raises(ValueError, match="nothing to drop"): fit_prompt(Instruction("q " * 50, "x"), tokenizer, max_tokens=20)
    assert fit_prompt(Instruction("q", "x"), tokenizer, max_tokens=100)[1] == 0     # no spans, fits: returned whole


# --- what LLaMA-Factory users bring: JSON Lines, ShareGPT, system prompts, dataset_info.json entries ---------------------

ROWS = [{"instruction": "Rate it.", "input": "Heat (1995)", "output": "4"},
        {"instruction": "Say yes.", "input": "", "output": "Yes.", "system": "Be brief."}]
CONVERSATIONS = [{"conversations": [{"from": "human", "value": "Rate it.\n\nHeat (1995)"}, {"from": "gpt", "value": "4"}]},
                 {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Say yes."},
                                    {"from": "gpt", "value": "Yes."}]}]


def _jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_alpaca_json_lines_load_like_a_json_list(tmp_path):
    (tmp_path / "list.json").write_text(json.dumps(ROWS))
    want = load_alpaca(tmp_path / "list.json")
    assert load_alpaca(_jsonl(tmp_path / "rows.jsonl", ROWS)) == want
    assert load_alpaca(_jsonl(tmp_path / "rows_in.json", ROWS)) == want          # JSON Lines under a .json name
    (tmp_path / "bad.jsonl").write_text(json.dumps(ROWS[0]) + "\n\n" + '{"instruction": "x", "output": 3}\n')
    with pytest.raises(DataFormatError, match=r"bad.jsonl, line 3, field 'output': record 2: 'output' is 3"):
        load_alpaca(tmp_path / "bad.jsonl")
    (tmp_path / "broken.jsonl").write_text(json.dumps(ROWS[0]) + "\n{oops\n")
    with pytest.raises(DataFormatError, match=r"broken.jsonl, line 2: invalid JSON"): load_alpaca(tmp_path / "broken.jsonl")


def test_a_system_prompt_is_kept_and_rendered_as_a_system_turn(tmp_path, tokenizer):
    inst = load_alpaca(_jsonl(tmp_path / "rows.jsonl", ROWS))[1]
    assert inst.system == "Be brief." and inst.to_alpaca() == ROWS[1]
    assert "<|im_start|>system\nBe brief.<|im_end|>" in render_prompt(inst, tokenizer)
    assert render_prompt(inst, style="alpaca").startswith("Be brief.\n\n### Instruction:\nSay yes.")
    export_alpaca([inst], tmp_path, "sys")                      # the system prompt survives a round trip, for LLaMA-Factory too
    assert json.loads((tmp_path / "dataset_info.json").read_text())["sys_train"]["columns"]["system"] == "system"
    assert load_dataset_info(tmp_path, "sys_train") == [inst]


def test_sharegpt_records_give_the_instructions_their_alpaca_twins_give(tmp_path, tokenizer):
    alpaca = load_alpaca(_jsonl(tmp_path / "rows.jsonl", ROWS))
    for path in (_jsonl(tmp_path / "chats.jsonl", CONVERSATIONS), tmp_path / "chats.json"):
        path.write_text(json.dumps(CONVERSATIONS)) if path.suffix == ".json" else None
        for got in (load_sharegpt(path), load_instructions(path)):
            assert [(render_prompt(i, tokenizer), i.output, i.system) for i in got] == \
                   [(render_prompt(i, tokenizer), i.output, i.system) for i in alpaca]
    openai = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say yes."},
                            {"role": "assistant", "content": "Yes."}]}]
    assert load_instructions(_jsonl(tmp_path / "openai.jsonl", openai))[0] == Instruction("Say yes.", "", "Yes.", system="Be brief.")


@pytest.mark.parametrize("turns,match", [
    ([("human", "a"), ("gpt", "b"), ("human", "c"), ("gpt", "d")], "record 2: has 4 turns (human, gpt, human, gpt)"),
    ([("human", "a")], "record 2: has 1 turn (human)"),
    ([("gpt", "b"), ("human", "a")], "record 2: has 2 turns (gpt, human)"),
    ([("human", "a"), ("function_call", "f()")], "record 2: has 2 turns"),
])
def test_sharegpt_conversations_longer_than_one_exchange_are_refused_in_one_line(tmp_path, turns, match):
    bad = {"conversations": [{"from": r, "value": v} for r, v in turns]}
    path = _jsonl(tmp_path / "chats.jsonl", [CONVERSATIONS[0], bad])
    with pytest.raises(DataFormatError, match=re.escape(f"chats.jsonl, line 2, field 'conversations': {match}")) as e:
        load_sharegpt(path)
    assert "\n" not in str(e.value) and "one 'human' turn, then one 'gpt' turn" in str(e.value)
    (tmp_path / "turn.json").write_text(json.dumps([{"conversations": [{"from": "human", "value": ["a"]}]}]))
    with pytest.raises(DataFormatError, match="record 1: turn 1 is"): load_sharegpt(tmp_path / "turn.json")


def test_dataset_info_entries_map_columns_and_tags_and_read_folders(tmp_path):
    _jsonl(tmp_path / "renamed.jsonl", [{"q": "Rate it.", "ctx": "Heat (1995)", "a": "4", "sys": "Be brief."}])
    (tmp_path / "chats").mkdir()
    _jsonl(tmp_path / "chats" / "part1.jsonl", [{"msgs": [{"who": "me", "text": "Say yes."}, {"who": "bot", "text": "Yes."}]}])
    _jsonl(tmp_path / "chats" / "part2.jsonl", [{"msgs": [{"who": "me", "text": "Say no."}, {"who": "bot", "text": "No."}]}])
    (tmp_path / "dataset_info.json").write_text(json.dumps({
        "renamed": {"file_name": "renamed.jsonl", "columns": {"prompt": "q", "query": "ctx", "response": "a", "system": "sys"}},
        "chats": {"file_name": "chats", "formatting": "sharegpt", "columns": {"messages": "msgs"},
                  "tags": {"role_tag": "who", "content_tag": "text", "user_tag": "me", "assistant_tag": "bot"}}}))
    got = load_dataset_info(tmp_path / "dataset_info.json", "renamed, chats")
    assert got == [Instruction("Rate it.", "Heat (1995)", "4", system="Be brief."), Instruction("Say yes.", "", "Yes."),
                   Instruction("Say no.", "", "No.")]
    assert load_dataset_info(tmp_path, ["chats"]) == got[1:]      # the folder stands for its dataset_info.json


@pytest.mark.parametrize("entry,match", [
    ({"hf_hub_url": "someone/data"}, "field 'd.hf_hub_url': dataset 'd': is not a local file"),
    ({"file_name": "x.json", "ranking": True}, "field 'd.ranking': dataset 'd': is a preference (ranking) dataset"),
    ({"file_name": "x.json", "formatting": "openai"}, "field 'd.formatting': dataset 'd': is 'openai'"),
    ({"file_name": "x.json", "columns": {"images": "images"}}, "field 'd.columns': dataset 'd': maps images"),
    ({"file_name": "x.json", "num_samples": 10}, "field 'd.num_samples'"),
    ({"file_name": "x.csv"}, "field 'd.file_name': dataset 'd': x.csv is not JSON"),
    ({"columns": {}}, "field 'd.file_name': dataset 'd': has no file_name"),
])
def test_dataset_info_entries_this_reader_cannot_honour_are_refused(tmp_path, entry, match):
    (tmp_path / "x.json").write_text(json.dumps(ROWS))
    (tmp_path / "dataset_info.json").write_text(json.dumps({"d": entry}))
    with pytest.raises(DataFormatError, match=re.escape(match)): load_dataset_info(tmp_path, "d")


def test_dataset_info_names_an_unknown_dataset_with_close_names(tmp_path):
    (tmp_path / "dataset_info.json").write_text(json.dumps({"ml100k_train": {"file_name": "a.json"}, "ml100k_valid": {"file_name": "b.json"}}))
    with pytest.raises(DataFormatError, match=r"field 'ml100k_trian': no dataset 'ml100k_trian' \(expected one of ml100k_train"):
        load_dataset_info(tmp_path, "ml100k_trian")
