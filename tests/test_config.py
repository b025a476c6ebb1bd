"""Config files decode strictly; errors name the key and the reason."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from agent.cli import main
from agent.config import load_config, parse_config
from pipeline.errors import ConfigError

CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"
CONFIGS = sorted(CONFIGS_DIR.glob("*.*ml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_passes_check(path: Path) -> None:
    assert main(["check", str(path)]) == 0


@pytest.mark.parametrize(
    ("text", "suffix", "where", "reason"),
    [
        (b"name: x\nserver: {prot: 1}", ".yaml", "$.server.prot", "unknown field"),
        (b"name: x\nvoice: {name: nobody}", ".yaml", "$.voice.name", "unknown voice 'nobody'"),
        (b"name: x\nserver: {port: eighty}", ".yaml", "$.server.port", "Expected `int`"),
        (b"description: no name", ".yaml", "$.name", "missing required field"),
        (b'name = "x"\n[server]\nport = "eighty"', ".toml", "$.server.port", "Expected"),
        (b"name: [unclosed", ".yaml", "$", "not valid YAML"),
        (b"name: x\nserver: {}\nserver: {}", ".yaml", "$", "key 'server' appears twice (line 3)"),
        (b"name: x", ".json", "$", "unknown config format"),
    ],
)
def test_a_broken_config_names_the_key_and_the_reason(
    text: bytes, suffix: str, where: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, suffix)
    assert info.value.path == where
    assert reason in info.value.reason


def test_check_reports_each_broken_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nsrever: {}\n")
    assert main(["check", str(CONFIGS[0]), str(broken)]) == 1
    assert "$.srever" in capsys.readouterr().err


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


# -- the full schema ------------------------------------------------------------------------

AGENT = """
name: x
profile: {llm: {model: m}}
dialogue:
  engine: mixed
  slots:
    - {name: n, type: number, prompt: How many?, min: 1, max: 9}
    - {name: t, type: time, prompt: When?, earliest: "12:00", latest: "22:00"}
  intents:
    - {name: book, examples: [book a table], flow: f}
    - {name: bye, keywords: [bye], actions: [{action: end_call}]}
  flows:
    - name: f
      slots: [n, t]
      confirm: "{n} at {t}?"
      actions: [{action: webhook, tool: hook, save_as: result}]
      branches:
        - {when: {var: result.ok, equals: true}, reply: "Done {result.ref}."}
tools:
  webhooks:
    - {name: hook, url: "http://127.0.0.1:9/h", parameters: {type: object, required: [n]}}
"""


def broken(path: str, replacement: str) -> bytes:
    """AGENT with the line containing ``path`` replaced (indentation kept)."""
    lines = AGENT.splitlines()
    (index,) = [i for i, line in enumerate(lines) if path in line]
    indent = lines[index][: len(lines[index]) - len(lines[index].lstrip())]
    lines[index] = indent + replacement
    return "\n".join(lines).encode()


def test_the_sample_agent_is_valid() -> None:
    config = parse_config(AGENT.encode(), ".yaml")
    assert config.dialogue.engine == "mixed"
    assert [slot.name for slot in config.dialogue.slots] == ["n", "t"]


@pytest.mark.parametrize(
    ("line", "replacement", "where", "reason"),
    [
        ("{name: n, type: number", "- {name: n, type: number, prompt: x, unit: [people]}",
         "$.dialogue.slots[0].unit", "unknown field"),
        ("{name: n, type: number", "- {name: n, type: integer, prompt: x}",
         "$.dialogue.slots[0].type", "Invalid value 'integer'"),
        ("{name: n, type: number", "- {name: n, type: number, prompt: x, min: 5, max: 2}",
         "$.dialogue.slots[0].max", "smaller than min"),
        ("{name: t, type: time", '- {name: t, type: time, prompt: x, earliest: "25:00"}',
         "$.dialogue.slots[1].earliest", "Expected `str` matching regex"),
        ("{name: t, type: time", '- {name: t, type: time, prompt: x, earliest: "22:00", '
         'latest: "12:00"}', "$.dialogue.slots[1].latest", "not after earliest"),
        ("{name: book,", "- {name: book, examples: [b], flow: nope}",
         "$.dialogue.intents[0].flow", "unknown flow 'nope'"),
        ("{name: book,", "- {name: bye, examples: [b]}",
         "$.dialogue.intents[1].name", "'bye' appears twice"),
        ("{name: book,", "- {name: book}",
         "$.dialogue.intents[0]", "needs examples, keywords or patterns"),
        ("{name: book,", "- {name: book, patterns: ['(unclosed']}",
         "$.dialogue.intents[0].patterns[0]", "not a regular expression"),
        ("{name: book,", "- {name: book, keywords: [b], reply: 'Hi {nobody}'}",
         "$.dialogue.intents[0].reply", "unknown slot or variable {nobody}"),
        ("{name: book,", "- {name: book, keywords: [b], reply: 'Hi {'}",
         "$.dialogue.intents[0].reply", "stray '{'"),
        ("{name: bye,", "- {name: bye, keywords: [b], actions: [{action: hangup}]}",
         "$.dialogue.intents[1].actions[0].action", "Invalid value 'hangup'"),
        ("slots: [n, t]", "slots: [n, tiem]", "$.dialogue.flows[0].slots[1]",
         "unknown slot 'tiem'"),
        ("slots: [n, t]", "slots: [n, n]", "$.dialogue.flows[0].slots[1]", "appears twice"),
        ("confirm:", "confirm: {text: '{n}?', emotion: grumpy}",
         "$.dialogue.flows[0].confirm.emotion", "Invalid enum value 'grumpy'"),
        ("actions: [{action: webhook", "actions: [{action: webhook, tool: hok}]",
         "$.dialogue.flows[0].actions[0].tool", "unknown webhook 'hok'"),
        ("- {when:", "- {when: {var: nothing, equals: 1}}",
         "$.dialogue.flows[0].branches[0].when.var", "unknown slot or variable 'nothing'"),
        ("- {when:", "- {when: {var: n, above: 1, below: 3}}",
         "$.dialogue.flows[0].branches[0].when", "exactly one of"),
        ("- {when:", "- {ask: [q]}", "$.dialogue.flows[0].branches[0].ask[0]",
         "not a slot of this flow"),
        ("- {when:", "- {goto: g}", "$.dialogue.flows[0].branches[0].goto", "unknown flow 'g'"),
        ("- {name: hook", '- {name: hook, url: "ftp://x"}', "$.tools.webhooks[0].url",
         "Expected `str` matching regex"),
        ("- {name: hook", '- {name: hook, url: "http://h", parameters: {type: object, '
         "required: [n, size]}}", "$.dialogue.flows[0].actions[0].arguments",
         "requires 'size'"),
        ("profile:", "profile: {}", "$.profile.llm", "the 'mixed' engine needs an LLM"),
        ("profile:", "profile: {llm: {model: m, base_url: localhost}}",
         "$.profile.llm.base_url", "Expected `str` matching regex"),
        ("engine: mixed", "engine: mixed\n  threshold: 1.5", "$.dialogue.threshold",
         "Expected `float` <= 1.0"),
        ("engine: mixed", "engine: mixed\n  llm: {tools: [nothing]}", "$.dialogue.llm.tools[0]",
         "unknown tool 'nothing'"),
        ("name: x", "name: x\ngreeting: {text: hi, emotion: grumpy}", "$.greeting.emotion",
         "Invalid enum value 'grumpy'"),
        ("name: x", "name: x\nturns: {end_of_turn_silence_ms: 300, "
         "early_end_of_turn_silence_ms: 400}", "$.turns",
         "early_end_of_turn_silence_ms must not exceed"),
        ("profile:", "profile: {llm: {model: m}, asr: {device: tpu}}", "$.profile.asr.device",
         "Invalid enum value 'tpu'"),
        ("profile:", "profile: {llm: {model: m}, tts: {engine: styletts2}}", "$.voice.name",
         "'joe' is a piper voice, but profile.tts.engine is 'styletts2'"),
        ("name: x", "name: x\nvoice: {name: styletts2-libritts}", "$.voice.name",
         "'styletts2-libritts' is a styletts2 voice, but profile.tts.engine is 'piper'"),
    ],
)  # fmt: skip
def test_a_broken_agent_names_the_key_and_the_reason(
    line: str, replacement: str, where: str, reason: str | None
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(broken(line, replacement), ".yaml")
    assert info.value.path == where
    assert reason is None or reason in info.value.reason


def test_a_handoff_needs_an_llm_engine() -> None:
    text = broken("{name: bye,", "- {name: bye, keywords: [b], actions: [{action: handoff}]}")
    parse_config(text, ".yaml")
    with pytest.raises(ConfigError) as info:
        parse_config(text.replace(b"engine: mixed", b"engine: intents"), ".yaml")
    assert info.value.path == "$.dialogue.intents[1].actions[0]"
    assert "needs `dialogue.engine: mixed`" in info.value.reason


def test_toml_agents_decode_the_same() -> None:
    toml = b"""
name = "x"
[greeting]
text = "Hello"
[[dialogue.slots]]
name = "n"
type = "number"
prompt = "How many?"
units = ["people"]
[[dialogue.intents]]
name = "book"
examples = ["book a table"]
flow = "f"
[[dialogue.flows]]
name = "f"
slots = ["n"]
confirm = { text = "{n} people?", emotion = "happy" }
"""
    config = parse_config(toml, ".toml")
    assert config.dialogue.flows[0].slots == ("n",)
    broken_toml = toml.replace(b'slots = ["n"]', b'slots = ["m"]')
    with pytest.raises(ConfigError) as info:
        parse_config(broken_toml, ".toml")
    assert info.value.path == "$.dialogue.flows[0].slots[0]"


def test_the_turns_section_is_the_turn_taking_config() -> None:
    from agent.config.schema import TurnsConfig
    from agent.turns import TurnConfig

    theirs = {f.name: f.default for f in msgspec.structs.fields(TurnConfig)}
    ours = {f.name: f.default for f in msgspec.structs.fields(TurnsConfig)}
    assert ours == {**theirs, "idle_prompt": "Are you still there?"}
    turns = load_config(CONFIGS_DIR / "receptionist.yaml").turns
    assert isinstance(turns, TurnConfig)
    assert turns.end_of_turn_silence_ms == 700


@pytest.mark.parametrize("name", ["assistant.yaml", "assistant-llm.yaml", "gpu.yaml"])
def test_llm_agents_give_the_llm_engine_its_config(name: str) -> None:
    from agent.config.runtime import llm_config

    config = load_config(CONFIGS_DIR / name)
    llm = llm_config(config)
    assert llm.model == config.profile.llm.model  # type: ignore[union-attr]
    assert [tool.name for tool in llm.tools] == list(config.dialogue.llm.tools)
    assert all((tool.webhook is None) != (tool.builtin is None) for tool in llm.tools)


def test_the_shipped_agents() -> None:
    engines = {path.stem: load_config(path).dialogue.engine for path in CONFIGS}
    assert engines == {
        "assistant": "llm",
        "assistant-llm": "llm",
        "default": "intents",
        "gpu": "mixed",
        "interpreter": "translate",
        "ivr": "intents",
        "receptionist": "intents",
    }
    gpu = load_config(CONFIGS_DIR / "gpu.yaml").profile
    assert (gpu.asr.model, gpu.asr.device, gpu.tts.engine) == ("large-v3", "cuda", "styletts2")
    assert gpu.llm is not None
    assert gpu.llm.backend == "vllm"
