"""StyleTTS2 speech for the GPU profile; the published StyleTTS2 checkpoints load.

:mod:`.engine` (the :class:`~voices.engine.TTSEngine`), :mod:`.checkpoint` (local loading),
:mod:`.model` (the inference graph) with its modules :mod:`.plbert`, :mod:`.text`,
:mod:`.prosody`, :mod:`.style`, :mod:`.diffusion`, :mod:`.decoder` and :mod:`.layers`;
:mod:`.config`, :mod:`.files` (finding a voice's files), :mod:`.styles` and :mod:`.phonemes`
(torch-free). Importing this package imports no torch.
"""
