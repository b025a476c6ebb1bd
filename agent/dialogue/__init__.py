"""The dialogue: what the agent says and does in reply to each user turn.

The intent engine (scripted in config):

- :mod:`~agent.dialogue.embeddings`: all-MiniLM-L6-v2 sentence embeddings in numpy;
- :mod:`~agent.dialogue.intents`: intent scores (embeddings, keywords, patterns), early match;
- :mod:`~agent.dialogue.parsing` and :mod:`~agent.dialogue.slots`: values in utterances;
- :mod:`~agent.dialogue.templates`: reply templates;
- :mod:`~agent.dialogue.script` and :mod:`~agent.dialogue.flows`: the sans-I/O conversation;
- :mod:`~agent.dialogue.actions`: webhooks over HTTP;
- :mod:`~agent.dialogue.engine`: the async engine a session uses;
- :mod:`~agent.dialogue.decision`: what a turn decides.

Submodules are imported where used (this package imports nothing heavy by itself).
"""
