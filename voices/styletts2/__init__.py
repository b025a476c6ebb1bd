"""StyleTTS2 speech for the GPU profile.

:mod:`.engine` (the :class:`~voices.engine.TTSEngine`), :mod:`.checkpoint` (local loading),
:mod:`.model` (the torch modules: a simplified StyleTTS2, see its docstring), :mod:`.config`,
:mod:`.styles` and :mod:`.phonemes` (torch-free). Importing this package imports no torch.
"""
