"""The StyleTTS2 engine on CPU with a tiny randomly initialised model the tests build.

The model is saved as a checkpoint and a ``config.yml`` and loaded back through the real
loading code; the engine then speaks through its executor. The audio is noise-like (the
weights are random): these tests check the code paths, not the voice.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import AsyncGenerator, Iterator
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path

import anyio
import msgspec
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pipeline.errors import ModelError  # noqa: E402
from tests.audio import espeak, write_wav  # noqa: E402
from voices.engine import (  # noqa: E402
    Emotion,
    PhonemeSpan,
    Prosody,
    SpeechChunk,
    SpeechPlan,
    SpeechSegment,
    Style,
)
from voices.styletts2.checkpoint import load_model, save_checkpoint  # noqa: E402
from voices.styletts2.config import (  # noqa: E402
    DecoderParams,
    DiffusionParams,
    DistParams,
    ModelParams,
    PLBertParams,
    PreprocessParams,
    SpectParams,
    StyleTTS2Config,
    TransformerParams,
    dump_config,
    load_config,
)
from voices.styletts2.engine import Reference, StyleTTS2Engine  # noqa: E402
from voices.styletts2.model import StyleTTS2Model  # noqa: E402
from voices.styletts2.phonemes import N_SYMBOLS, Phonemizer  # noqa: E402
from voices.styletts2.styles import Knobs, rendering  # noqa: E402

RATE = 8000
HOP = 40
FRAME = 2 * HOP  # samples per predicted duration frame
TINY_PLBERT = PLBertParams(
    vocab_size=N_SYMBOLS, hidden_size=32, num_attention_heads=2, intermediate_size=64,
    max_position_embeddings=128, num_hidden_layers=2, embedding_size=16,
)  # fmt: skip
TINY_DIFFUSION = DiffusionParams(
    transformer=TransformerParams(num_layers=1, num_heads=2, head_features=8),
    dist=DistParams(sigma_data=0.25),
)
TINY_SPECT = PreprocessParams(
    sr=RATE, spect_params=SpectParams(n_fft=128, win_length=100, hop_length=HOP)
)
#: LibriTTS-like: multispeaker, HiFi-GAN
TINY = StyleTTS2Config(
    model_params=ModelParams(
        multispeaker=True, dim_in=4, hidden_dim=16, max_conv_dim=16, n_layer=1, n_mels=80,
        n_token=N_SYMBOLS, max_dur=10, style_dim=8,
        decoder=DecoderParams(
            resblock_kernel_sizes=(3,), upsample_rates=(5, 4, 2), upsample_initial_channel=16,
            resblock_dilation_sizes=((1, 3),), upsample_kernel_sizes=(10, 8, 4),
            decode_channels=16, residual_channels=4,
        ),
        diffusion=TINY_DIFFUSION, plbert=TINY_PLBERT,
    ),
    preprocess_params=TINY_SPECT,
)  # fmt: skip
#: LJSpeech-like: single speaker, iSTFTNet
TINY_ISTFT = msgspec.structs.replace(
    TINY,
    model_params=msgspec.structs.replace(
        TINY.model_params,
        multispeaker=False,
        decoder=DecoderParams(
            type="istftnet", resblock_kernel_sizes=(3,), upsample_rates=(4, 2),
            upsample_initial_channel=16, resblock_dilation_sizes=((1, 3),),
            upsample_kernel_sizes=(8, 4), gen_istft_n_fft=10, gen_istft_hop_size=5,
            decode_channels=16, residual_channels=4,
        ),
    ),
)  # fmt: skip

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Files:
    checkpoint: Path
    config: Path
    neutral: Path
    happy: Path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    folder = tmp_path_factory.mktemp("styletts2")
    torch.manual_seed(0)
    save_checkpoint(StyleTTS2Model(TINY), folder / "model.pth")
    dump_config(TINY, folder / "config.yml")
    (folder / "neutral.wav").write_bytes(write_wav(espeak("A calm voice.", RATE), RATE))
    happy = espeak("What a lovely day!", RATE, wpm=220)
    (folder / "happy.wav").write_bytes(write_wav(happy, RATE))
    return Files(folder / "model.pth", folder / "config.yml", folder / "neutral.wav",
                 folder / "happy.wav")  # fmt: skip


@pytest.fixture(scope="module")
def engine(files: Files) -> Iterator[StyleTTS2Engine]:
    references: dict[Emotion, Reference] = {"neutral": files.neutral, "happy": files.happy}
    with StyleTTS2Engine(
        files.checkpoint, files.config, device="cpu", threads=1, references=references
    ) as engine:
        yield engine


async def collect(chunks: AsyncGenerator[SpeechChunk, None]) -> list[SpeechChunk]:
    async with aclosing(chunks):
        return [chunk async for chunk in chunks]


def assert_aligned(chunks: list[SpeechChunk]) -> None:
    """Chunks follow each other; each chunk's words tile its samples, in text order."""
    position = 0
    for chunk in chunks:
        assert chunk.sample_rate == RATE
        assert len(chunk.pcm) % 2 == 0
        assert chunk.sample_offset == position
        position = chunk.end_offset
        if not chunk.words:
            continue
        assert chunk.words[0].sample_start == chunk.sample_offset
        assert chunk.words[-1].sample_end == chunk.end_offset
        for before, after in itertools.pairwise(chunk.words):
            assert before.sample_end == after.sample_start
            assert before.text_end <= after.text_start
        assert all(w.sample_start < w.sample_end for w in chunk.words)


def test_the_checkpoint_loads_back_with_the_same_weights(files: Files) -> None:
    torch.manual_seed(0)
    original = StyleTTS2Model(TINY).state_dict()
    loaded = load_model(files.checkpoint, files.config).state_dict()
    assert original.keys() == loaded.keys()
    assert all(torch.equal(original[key], loaded[key]) for key in original)
    assert load_config(files.config) == TINY


async def test_a_two_clause_plan_streams_one_chunk_per_clause(engine: StyleTTS2Engine) -> None:
    plan = SpeechPlan(
        (
            SpeechSegment("Hello there, ", marks=("start",)),
            SpeechSegment("how are you today?", Prosody(rate=1.5), pause_ms=250,
                          style=Style("happy")),
        )
    )  # fmt: skip
    done = engine.statistics().requests_done
    chunks: list[SpeechChunk] = []
    with anyio.fail_after(30):
        async with aclosing(engine.synthesize(plan)) as stream:
            async for chunk in stream:
                chunks.append(chunk)
                # each chunk is one executor request, delivered before the next one starts
                assert engine.statistics().requests_done == done + len(chunks)
    assert len(chunks) == 2
    assert_aligned(chunks)
    text = plan.text
    assert [text[w.text_start : w.text_end] for c in chunks for w in c.words] == [
        "Hello", "there,", "how", "are", "you", "today?",
    ]  # fmt: skip
    assert chunks[0].marks == ("start",)
    assert chunks[1].marks == ()
    assert (chunks[0].text_start, chunks[0].text_end) == (0, len("Hello there,"))
    assert chunks[1].text_end == len(text)
    # whole frames of audio, then the segment's pause, owned by the last word
    last = chunks[1]
    pause = 250 * RATE // 1000
    assert last.pcm[-2 * pause :] == bytes(2 * pause)
    assert (last.num_samples - pause) % FRAME == 0
    assert chunks[0].num_samples % FRAME == 0


async def test_a_plan_with_only_a_pause_gives_silence_with_its_marks(
    engine: StyleTTS2Engine,
) -> None:
    plan = SpeechPlan(
        (SpeechSegment("Hi.", pause_ms=0), SpeechSegment("", pause_ms=100, marks=("end",)))
    )
    with anyio.fail_after(30):
        chunks = await collect(engine.synthesize(plan))
    assert_aligned(chunks)
    assert chunks[-1].marks == ("end",)
    assert chunks[-1].pcm == bytes(2 * 100 * RATE // 1000)
    assert chunks[-1].words == ()


async def test_closing_the_stream_stops_synthesis(engine: StyleTTS2Engine) -> None:
    text = " ".join(f"This is clause number {n} of a long answer." for n in range(1, 9))
    before = engine.statistics()
    with anyio.fail_after(30):
        async with aclosing(engine.synthesize(text)) as stream:
            first = await stream.__anext__()
        assert first.num_samples > 0
        after = engine.statistics()
        assert after.requests_done == before.requests_done + 1
        # the engine is still usable
        chunks = await collect(engine.synthesize("Still here."))
    assert len(chunks) == 1
    assert engine.statistics().requests_done == after.requests_done + 1


async def test_cancelling_the_reader_discards_the_running_clause(engine: StyleTTS2Engine) -> None:
    text = " ".join(f"This is clause number {n} of a long answer." for n in range(1, 9))
    before = engine.statistics()
    with anyio.fail_after(30):
        with anyio.CancelScope() as scope:
            async with aclosing(engine.synthesize(text)) as stream:
                async for _ in stream:
                    scope.cancel()  # the next request is cancelled while queued or running
        await collect(engine.synthesize("Done."))
    stats = engine.statistics()
    # the first clause and "Done." ran; the second never ran, or ran and was thrown away
    done = stats.requests_done - before.requests_done
    assert done in (2, 3)
    assert stats.discarded - before.discarded == done - 2
    assert stats.cancelled - before.cancelled <= 1


def test_emotions_change_the_style_inputs(engine: StyleTTS2Engine) -> None:
    neutral = rendering(Prosody(), None)
    excited = rendering(Prosody(), Style("excited"))
    calm = rendering(Prosody(), Style("calm"))
    assert excited.knobs.alpha > neutral.knobs.alpha > calm.knobs.alpha
    assert excited.knobs.beta > neutral.knobs.beta > calm.knobs.beta
    assert excited.knobs.embedding_scale > neutral.knobs.embedding_scale
    assert excited.knobs.diffusion_steps > calm.knobs.diffusion_steps
    assert excited.knobs.speed > 1 > calm.knobs.speed
    assert rendering(Prosody(), Style("whisper")).whisper == 1.0
    # the reference style moves from the neutral reference to the happy one with intensity
    base = engine.reference_style(None)
    full = engine.reference_style(Style("happy"))
    half = engine.reference_style(Style("happy", 0.5))
    assert base is not None
    assert full is not None
    assert half is not None
    assert not torch.allclose(base, full)
    assert torch.allclose(half, (base + full) / 2, atol=1e-6)
    assert torch.equal(engine.reference_style(Style("sad")), base)  # no sad reference


async def test_an_emotion_changes_the_audio_and_a_seed_repeats_it(
    engine: StyleTTS2Engine,
) -> None:
    def plan(style: Style | None, rate: float = 1.0) -> SpeechPlan:
        return SpeechPlan((SpeechSegment("Good morning.", Prosody(rate=rate), style=style),))

    with anyio.fail_after(30):
        neutral = await collect(engine.synthesize(plan(None)))
        again = await collect(engine.synthesize(plan(None)))
        angry = await collect(engine.synthesize(plan(Style("angry"))))
        fast = await collect(engine.synthesize(plan(None, rate=2.0)))
    assert neutral[0].pcm == again[0].pcm
    assert neutral[0].pcm != angry[0].pcm
    assert fast[0].num_samples < neutral[0].num_samples


TOMATO = "t\u0259m\u02c8\u0251\u02d0to\u028a"  # British "tomato" in IPA


def test_phoneme_spans_replace_espeak() -> None:
    phonemizer = Phonemizer()
    plain = phonemizer.tokenize("say tomato now")
    spoken = phonemizer.tokenize("say tomato now", (PhonemeSpan(4, 10, TOMATO),))
    assert [(u.text_start, u.text_end) for u in spoken.units] == [(0, 3), (4, 10), (11, 14)]
    assert plain.tokens != spoken.tokens
    assert spoken.units[0].token_start == 0  # the pad belongs to the first word
    assert spoken.units[-1].token_end == len(spoken.tokens)


@pytest.mark.parametrize("config", [TINY, TINY_ISTFT], ids=["hifigan", "istftnet"])
def test_the_audio_lasts_as_long_as_the_predicted_durations(
    config: StyleTTS2Config, files: Files
) -> None:
    torch.manual_seed(1)
    model = StyleTTS2Model(config).eval()
    tokens = torch.tensor([Phonemizer().tokenize("Hello there, friend.").tokens])
    reference = None
    if config.model_params.multispeaker:
        audio = espeak("A calm voice.", RATE)
        reference = model.reference_style(torch.from_numpy(audio.astype(np.float32) / 32768))
    with torch.inference_mode():
        out = model.synthesize(tokens, Knobs(), torch.Generator().manual_seed(0), reference)
        slow = model.synthesize(
            tokens, Knobs(speed=0.5), torch.Generator().manual_seed(0), reference
        )
    assert out.durations.shape == (tokens.shape[1],)
    assert out.durations.min() >= 1
    assert out.audio.shape == (int(out.durations.sum()) * FRAME,)
    assert np.isfinite(out.audio).all()
    assert np.abs(out.audio).max() > 0
    assert out.audio[-1] == 0.0  # the end is faded out
    assert slow.audio.shape == (int(slow.durations.sum()) * FRAME,)
    assert slow.durations.sum() > out.durations.sum()


def test_a_data_parallel_checkpoint_with_training_groups_loads(
    files: Files, tmp_path: Path
) -> None:
    saved = torch.load(files.checkpoint, weights_only=True)
    net = {
        group: {f"module.{key}": value for key, value in state.items()}
        for group, state in saved["net"].items()
    }
    net["bert"]["module.embeddings.position_ids"] = torch.arange(128)[None]
    for group in ("text_aligner", "pitch_extractor", "mpd", "msd", "wd"):
        net[group] = {"module.layer.weight": torch.zeros(2, 2)}
    torch.save({"net": net, "epoch": 20, "iters": 1, "optimizer": {}}, tmp_path / "dp.pth")
    loaded = load_model(tmp_path / "dp.pth", files.config).state_dict()
    original = load_model(files.checkpoint, files.config).state_dict()
    assert loaded.keys() == original.keys()
    assert all(torch.equal(loaded[key], original[key]) for key in original)


PUBLISHED_LAYOUT = """\
log_dir: "Models/LJSpeech"
epochs_2nd: 100
PLBERT_dir: 'Utils/PLBERT/'
preprocess_params:
  sr: 24000
  spect_params: {n_fft: 2048, win_length: 1200, hop_length: 300}
model_params:
  multispeaker: false
  dim_in: 64
  hidden_dim: 512
  max_conv_dim: 512
  n_layer: 3
  n_mels: 80
  n_token: 178
  max_dur: 50
  style_dim: 128
  dropout: 0.2
  decoder:
      type: 'istftnet'
      resblock_kernel_sizes: [3,7,11]
      upsample_rates :  [10, 6]
      upsample_initial_channel: 512
      resblock_dilation_sizes: [[1,3,5], [1,3,5], [1,3,5]]
      upsample_kernel_sizes: [20, 12]
      gen_istft_n_fft: 20
      gen_istft_hop_size: 5
  slm: {model: 'microsoft/wavlm-base-plus', sr: 16000, hidden: 768, nlayers: 13}
  diffusion:
    embedding_mask_proba: 0.1
    transformer: {num_layers: 3, num_heads: 8, head_features: 64, multiplier: 2}
    dist: {sigma_data: 0.19926, estimate_sigma_data: true, mean: -3.0, std: 1.0}
loss_params: {lambda_mel: 5.}
"""


def test_the_published_config_layout_is_read(tmp_path: Path) -> None:
    folder = tmp_path / "Models" / "LJSpeech"
    folder.mkdir(parents=True)
    (folder / "config.yml").write_text(PUBLISHED_LAYOUT)
    # without PL-BERT's own config.yml: the published PL-BERT's size
    config = load_config(folder / "config.yml")
    assert config.model_params.decoder.type == "istftnet"
    assert config.model_params.decoder.gen_istft_hop_size == 5
    assert config.model_params.diffusion.dist.sigma_data == 0.19926
    assert config.frame_samples == 600
    assert config.plbert == PLBertParams()
    # Utils/PLBERT/config.yml of the StyleTTS2 repository, found from the config's folder
    plbert = tmp_path / "Utils" / "PLBERT"
    plbert.mkdir(parents=True)
    (plbert / "config.yml").write_text(
        "log_dir: Checkpoint\nmodel_params:\n  vocab_size: 178\n  hidden_size: 384\n"
        "  num_attention_heads: 6\n  intermediate_size: 1024\n"
        "  max_position_embeddings: 512\n  num_hidden_layers: 6\n  dropout: 0.1\n"
    )
    config = load_config(folder / "config.yml")
    assert (config.plbert.hidden_size, config.plbert.num_hidden_layers) == (384, 6)
    assert config.model_params.plbert == config.plbert
    (plbert / "config.yml").write_text("model_params: {hidden_size: wide}\n")
    with pytest.raises(ModelError, match=r"PL-BERT config .*config\.yml is not usable"):
        load_config(folder / "config.yml")
    with pytest.raises(ModelError, match=r"cannot read the PL-BERT config .*absent\.yml"):
        load_config(folder / "config.yml", plbert=tmp_path / "absent.yml")
    (plbert / "config.yml").unlink()
    (folder / "config.yml").write_text(PUBLISHED_LAYOUT.replace("'istftnet'", "'melgan'"))
    with pytest.raises(ModelError, match=r"model_params\.decoder\.type 'melgan'"):
        load_config(folder / "config.yml")


def test_a_missing_checkpoint_is_a_clear_model_error(files: Files, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"no StyleTTS2 checkpoint at .*absent\.pth"):
        load_model(tmp_path / "absent.pth", files.config)
    neutral: dict[Emotion, Reference] = {"neutral": files.neutral}
    engine = StyleTTS2Engine(tmp_path / "absent.pth", files.config, device="cpu",
                             references=neutral)  # fmt: skip
    with pytest.raises(ModelError, match="no StyleTTS2 checkpoint"):
        engine.start()
    with pytest.raises(ModelError, match="multispeaker: it needs a neutral reference"):
        StyleTTS2Engine(files.checkpoint, files.config, device="cpu")
    with pytest.raises(ModelError, match="cannot read the StyleTTS2 config"):
        StyleTTS2Engine(files.checkpoint, tmp_path / "absent.yml", device="cpu")


def test_a_checkpoint_that_does_not_fit_is_a_clear_model_error(
    files: Files, tmp_path: Path
) -> None:
    saved = torch.load(files.checkpoint, weights_only=True)
    net = saved["net"]
    del net["predictor"]["duration_proj.linear_layer.weight"]
    torch.save(saved, tmp_path / "missing.pth")
    with pytest.raises(
        ModelError, match=r"in 'predictor': missing keys duration_proj\.linear_layer\.weight"
    ):
        load_model(tmp_path / "missing.pth", files.config)
    del net["decoder"]
    torch.save(saved, tmp_path / "no-decoder.pth")
    with pytest.raises(ModelError, match="lacks modules: decoder"):
        load_model(tmp_path / "no-decoder.pth", files.config)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read the StyleTTS2 checkpoint"):
        load_model(tmp_path / "junk.pth", files.config)
    # a config that sizes the model differently
    wider = TINY.model_params.__class__(
        **{**{f: getattr(TINY.model_params, f) for f in TINY.model_params.__struct_fields__},
           "hidden_dim": 48}
    )  # fmt: skip
    dump_config(StyleTTS2Config(model_params=wider, preprocess_params=TINY.preprocess_params),
                tmp_path / "wider.yml")  # fmt: skip
    with pytest.raises(ModelError, match="does not fit the config in 'bert_encoder': shapes"):
        load_model(files.checkpoint, tmp_path / "wider.yml")


def test_a_config_that_cannot_work_is_a_clear_model_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text("preprocess_params: {sr: 24000, spect_params: {hop_length: 256}}\n")
    with pytest.raises(ModelError, match="give 300 samples a frame, not hop_length 256"):
        load_config(path)
    path.write_text("model_params: {hidden_dim: many}\n")
    with pytest.raises(ModelError, match="hidden_dim"):
        load_config(path)


def test_the_engine_modules_do_not_import_torch() -> None:
    code = (
        "import sys, voices.styletts2, voices.styletts2.engine, voices.styletts2.styles; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def test_a_voice_directory_or_cached_hub_name_gives_its_files(
    files: Files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from voices.styletts2.files import locate

    snapshot = tmp_path / "hub" / "models--someone--tiny-tts" / "snapshots" / "abc123"
    model = snapshot / "Models" / "Tiny"
    (model / "references").mkdir(parents=True)
    for name in ("epoch_2nd_00001.pth", "epoch_2nd_00002.pth"):
        (model / name).write_bytes(files.checkpoint.read_bytes())
    (model / "config.yml").write_bytes(files.config.read_bytes())
    (model / "references" / "neutral.wav").write_bytes(files.neutral.read_bytes())
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123\n")
    found = locate(str(snapshot))
    assert found.checkpoint == model / "epoch_2nd_00002.pth"  # the latest epoch
    assert found.config == model / "config.yml"
    assert found.references == {"neutral": model / "references" / "neutral.wav"}
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert locate("someone/tiny-tts") == found
    with pytest.raises(ModelError, match=r"'someone/absent' not found.*nothing is downloaded"):
        locate("someone/absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"no config\.yml beside a \.pth checkpoint"):
        locate(str(tmp_path / "empty"))


def test_a_styletts2_profile_whose_files_are_absent_fails_at_start_up(tmp_path: Path) -> None:
    from agent.config.loading import load_config as load_agent
    from agent.models import tts_engine

    config = load_agent(Path(__file__).parents[2] / "configs" / "gpu.yaml")
    tts = msgspec.structs.replace(config.profile.tts, voice=str(tmp_path / "absent"))
    profile = msgspec.structs.replace(config.profile, tts=tts)
    with pytest.raises(ModelError, match=r"StyleTTS2 voice .*absent' not found"):
        tts_engine(msgspec.structs.replace(config, profile=profile))
