"""Drives two running flexpert servers with the official `openai` client through the tool-calling
and reasoning flows: argv[1] serves with --enable-auto-tool-choice --tool-call-parser hermes and a
tool-aware template, argv[2] with --reasoning-parser deepseek_r1. The fixture model's output is
noise, so the calls asserted are the ones a named tool choice forces; the parsers' reading of
real tool-call text is tested on fixed outputs in FrontEndTests."""
import json
import sys
import urllib.request

import openai

tools_client = openai.OpenAI(base_url=sys.argv[1], api_key="unused")
reasoning_client = openai.OpenAI(base_url=sys.argv[2], api_key="unused")
model = tools_client.models.list().data[0].id

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "default": 1}},
                   "required": ["city"]}}}]
HISTORY = [
    {"role": "system", "content": "You call tools."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21}"},
    {"role": "user", "content": "And in Oslo?"},
]
NAMED = {"type": "function", "function": {"name": "get_weather"}}

# A named tool choice: the answer is the named function's arguments, whole and streamed.
named = tools_client.chat.completions.create(model=model, messages=HISTORY, tools=TOOLS, tool_choice=NAMED, max_tokens=8, temperature=0)
call = named.choices[0].message.tool_calls[0]
assert call.type == "function" and call.function.name == "get_weather", named
assert call.id.startswith("chatcmpl-tool-"), call.id
assert named.choices[0].finish_reason == "length", named
streamed_name, streamed_arguments, ids = "", "", set()
for chunk in tools_client.chat.completions.create(model=model, messages=HISTORY, tools=TOOLS, tool_choice=NAMED, max_tokens=8,
                                                  temperature=0, stream=True):
    for choice in chunk.choices:
        for delta in choice.delta.tool_calls or []:
            assert delta.index == 0, delta
            ids.add(delta.id) if delta.id else None
            streamed_name += delta.function.name or ""
            streamed_arguments += delta.function.arguments or ""
assert streamed_name == "get_weather" and len(ids) == 1, (streamed_name, ids)
assert streamed_arguments == call.function.arguments, (streamed_arguments, call.function.arguments)

# Auto tool choice: noise has no <tool_call>, so it is the answer, and the finish is the engine's.
auto = tools_client.chat.completions.create(model=model, messages=HISTORY, tools=TOOLS, max_tokens=6, temperature=0)
assert not auto.choices[0].message.tool_calls and auto.choices[0].finish_reason == "length", auto
none = tools_client.chat.completions.create(model=model, messages=HISTORY, tools=TOOLS, tool_choice="none", max_tokens=6, temperature=0)
assert none.choices[0].message.content == auto.choices[0].message.content, (none, auto)

# /tokenize renders the same conversation through the template, as vLLM serves it.
request = urllib.request.Request(sys.argv[1].removesuffix("/v1") + "/tokenize",
                                 data=json.dumps({"messages": HISTORY, "tools": TOOLS}).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
with urllib.request.urlopen(request) as response:
    tokenized = json.load(response)
assert tokenized["count"] == len(tokenized["tokens"]) == named.usage.prompt_tokens, (tokenized["count"], named.usage)

def post(path, body):
    request = urllib.request.Request(sys.argv[1].removesuffix("/v1") + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.load(response)


plain = post("/tokenize", {"prompt": "Hello, 世界", "return_token_strs": True})
assert list(plain) == ["count", "max_model_len", "tokens", "token_strs"], plain
assert plain["count"] == len(plain["tokens"]) == len(plain["token_strs"]) and plain["max_model_len"] > 0, plain
assert post("/detokenize", {"tokens": plain["tokens"]}) == {"prompt": "Hello, 世界"}

# A refused conversation is a 400 carrying the template's own message.
try:
    tools_client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=2,
                                         extra_body={"chat_template": "{{ raise_exception('roles must alternate') }}"})
    raise AssertionError("a refused conversation must fail")
except openai.BadRequestError as error:
    assert "roles must alternate" in str(error), error

# DeepSeek-R1's reasoning: the template opened <think>, so without </think> the whole output is reasoning.
thought = reasoning_client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Think."}], max_tokens=6,
                                                   temperature=0)
message = thought.choices[0].message
reasoning = message.model_extra.get("reasoning_content")
assert reasoning and message.model_extra.get("reasoning") == reasoning and message.content is None, message
pieces = []
for chunk in reasoning_client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Think."}], max_tokens=6,
                                                      temperature=0, stream=True):
    for choice in chunk.choices:
        pieces.append((choice.delta.model_extra or {}).get("reasoning_content") or "")
        assert not choice.delta.content, choice.delta
assert "".join(pieces) == reasoning, (pieces, reasoning)

print("openai tools ok", openai.__version__)
