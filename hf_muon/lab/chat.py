"""A Tulu-style chat template that carries ``{% generation %}`` markers, for assistant-only loss.

The format follows allenai/tulu-3 (``<|system|>``, ``<|user|>``, ``<|assistant|>`` role headers, one
newline after each, the assistant turn closed by the EOS token). TRL's ``assistant_only_loss=True``
needs the generation markers around exactly the tokens the model should learn (assistant content + EOS),
and TRL cannot patch a Tulu template on its own, so we ship one.
"""

from __future__ import annotations

TULU_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<|system|>\\n' + message['content'] + '\\n' }}"
    "{% elif message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + '\\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\\n' }}"
    "{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}"
    "{% if not loop.last %}{{ '\\n' }}{% endif %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)


def prepare_chat_tokenizer(tokenizer):
    """Give ``tokenizer`` the Tulu template and a pad token (EOS) when it has none; returns it."""
    tokenizer.chat_template = TULU_CHAT_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
