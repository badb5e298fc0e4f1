"""Drives a running flexpert server with the official `openai` client (argv[1] is the base URL)."""
import sys

import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key="unused")
model = client.models.list().data[0].id

completion = client.completions.create(model=model, prompt="The quick brown fox", max_tokens=6, temperature=0)
assert completion.choices[0].finish_reason == "length", completion
assert completion.usage.completion_tokens == 6, completion.usage
text = completion.choices[0].text

streamed = "".join(chunk.choices[0].text for chunk in client.completions.create(
    model=model, prompt="The quick brown fox", max_tokens=6, temperature=0, stream=True) if chunk.choices)
assert streamed == text, (streamed, text)

chat = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello"}], max_tokens=5,
                                      temperature=0, logprobs=True, top_logprobs=2)
assert chat.choices[0].message.role == "assistant", chat
assert len(chat.choices[0].logprobs.content) == 5, chat.choices[0].logprobs
assert chat.usage.completion_tokens == 5, chat.usage

pieces, usage = [], None
for chunk in client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello"}], max_tokens=5,
                                            temperature=0, stream=True, stream_options={"include_usage": True}):
    if chunk.usage is not None:
        usage = chunk.usage
    for choice in chunk.choices:
        pieces.append(choice.delta.content or "")
assert "".join(pieces) == chat.choices[0].message.content, (pieces, chat.choices[0].message.content)
assert usage is not None and usage.completion_tokens == 5, usage

try:
    client.completions.create(model="no-such-model", prompt="hi", max_tokens=2)
    raise AssertionError("an unknown model must fail")
except openai.NotFoundError as error:
    assert error.status_code == 404

try:
    client.completions.create(model=model, prompt="hi", max_tokens=-1)
    raise AssertionError("negative max_tokens must fail")
except openai.BadRequestError as error:
    assert error.status_code == 400 and "max_tokens" in str(error)

print("openai client ok", openai.__version__)
