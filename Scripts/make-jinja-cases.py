#!/usr/bin/env python3
"""Renders small templates, one Jinja construct each, with Jinja2 set up as transformers sets it up
for chat templates, and records what Jinja2 gives (text or error), so that Flexpert's interpreter is
checked against the reference on whitespace control, scoping, filters, tests and methods.

Usage: python3 Scripts/make-jinja-cases.py OUT.json   (needs `pip install jinja2`)
"""
import json
import sys

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


def environment():
    # As transformers' `_compile_jinja_template` (utils/chat_template_utils.py).
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


MESSAGES = [
    {"role": "system", "content": "  You are helpful.  "},
    {"role": "user", "content": "Hi 😀 \"quoted\" \\ back\nslash"},
    {"role": "assistant", "content": "Hello!", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 3, "unit": None, "scale": 1.5}}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21}"},
]
CONTEXT = {"messages": MESSAGES, "name": "world", "items": [3, 1, 2], "words": ["b", "A", "c"], "flag": True, "count": 0,
           "nested": {"a": {"b": [1, {"c": "deep"}]}}, "empty": [], "text": "  Hello, World  ", "number": 7, "ratio": 0.25,
           "big": 1e20, "small": 1e-7, "neg": -3}

CASES = [
    # whitespace control, trim_blocks, lstrip_blocks
    "a\n{% if true %}\nb\n{% endif %}\nc",
    "a\n    {% if true %}\n    b\n    {% endif %}\nc\n",
    "a  {% if true %}  b  {% endif %}  c",
    "x\n  {{ name }}\n  {%- if true %} y {% endif -%}\n  z",
    "{%- for i in items -%}\n  {{ i }},\n{%- endfor %}",
    "line\n  {# comment #}\nnext\n  {#- trimmed -#}  after",
    "  {%+ if true %}kept{% endif %}\n{% if true +%}\nnewline kept{% endif %}",
    "{{ name }}\n{{ name }}\n",
    "a\r\nb\r\n{% if true %}\r\nc{% endif %}\r\n",
    "{% raw %}{{ not rendered }}{% endraw %} {{ name }}",
    # expressions
    "{{ 1 + 2 * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 7 / 2 }} {{ 4 / 2 }}",
    "{{ 'a' ~ 1 ~ none ~ true }} {{ 'x' * 3 }} {{ [1] + [2] }}",
    "{{ 1 < 2 < 3 }} {{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' in 'cat' }} {{ 2 in items }} {{ 'role' in messages[0] }} {{ 'x' not in 'abc' }}",
    "{{ none }} {{ true }} {{ false }} {{ 1.0 }} {{ 0.1 + 0.2 }} {{ big }} {{ small }} {{ ratio }} {{ neg }} {{ 3.0 * 2 }}",
    "{{ items }} {{ messages[0] }} {{ ('a', 1) }} {{ {'k': none, 'j': [true, 1.5]} }}",
    "{{ 'yes' if flag else 'no' }} {{ 'yes' if count else 'no' }} [{{ 'only' if count }}]",
    "{{ flag and 'a' }} {{ count or 'b' }} {{ not flag }} {{ none or [] }}",
    "{{ messages[-1].role }} {{ messages[0]['content'] }} {{ nested.a.b[1].c }} {{ nested['a']['b'][0] }} {{ items[5] is defined }}",
    "{{ items[1:] }} {{ items[::-1] }} {{ 'hello'[1:4] }} {{ 'hello'[::-1] }} {{ items[-2:] }} {{ messages[1:-1] | length }}",
    "{{ 'It''s' }} {{ \"tab\\there\" }} {{ 'uni\\u00e9' }} {{ 'a' 'b' }}",
    # statements and scoping
    "{% set x = 1 %}{% for i in items %}{% set x = i %}{{ x }}{% endfor %}{{ x }}",
    "{% set ns = namespace(total=0, seen=false) %}{% for i in items %}{% set ns.total = ns.total + i %}{% endfor %}{{ ns.total }} {{ ns.seen }}",
    "{% for i in items %}{% if loop.first %}first {% endif %}{{ loop.index }}/{{ loop.length }}:{{ i }}{% if not loop.last %}, {% endif %}{% endfor %}",
    "{% for i in items %}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.index0 }}{{ loop.cycle('a', 'b') }}{% endfor %}",
    "{% for i in items %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 2 %}{% break %}{% endif %}{{ i }}{% endfor %}",
    "{% for i in empty %}x{% else %}empty{% endfor %} {% for i in items if i > 1 %}{{ i }}{{ loop.length }}{% endfor %}",
    "{% for key, value in nested.a.items() %}{{ key }}={{ value }}{% endfor %} {% for k in nested %}{{ k }}{% endfor %}",
    "{% for m in messages %}{{ loop.previtem.role if loop.previtem is defined else '-' }}>{{ m.role }} {% endfor %}",
    "{% if count %}a{% elif flag %}b{% else %}c{% endif %}",
    "{% macro greet(who, punct='!') %}Hello {{ who }}{{ punct }}{% endmacro %}{{ greet(name) }} {{ greet('you', punct='?') }}",
    "{% macro render(v) %}{% if v is mapping %}{{ '{' }}{% for k, x in v.items() %}{{ k }}:{{ render(x) }}{% endfor %}{{ '}' }}{% else %}{{ v }}{% endif %}{% endmacro %}{{ render(nested) }}",
    "{% set block %}inside {{ name }}{% endset %}[{{ block }}] {% set a, b = 1, 2 %}{{ a }}{{ b }}",
    "{% filter upper %}shout {{ name }}{% endfilter %}",
    "{% with y = 5 %}{{ y }}{% endwith %}{{ y is defined }}",
    "{% macro wrap() %}[{{ caller() }}]{% endmacro %}{% call wrap() %}inner{% endcall %}",
    # filters
    "{{ messages | length }} {{ text | trim }} {{ text | length }} {{ 'a-b' | replace('-', '+') }} {{ name | upper }} {{ 'ABC' | lower }}",
    "{{ messages[2].tool_calls[0].function.arguments | tojson }} {{ messages[0] | tojson(indent=2) }}",
    "{{ {'é': 'ü', 'k': '\\n\\t\"'} | tojson }} {{ [1.0, 2.5, none, true] | tojson }} {{ '😀' | tojson(ensure_ascii=true) }} {{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}",
    "{{ nested | tojson(indent=4) }} {{ empty | tojson(indent=2) }} {{ {} | tojson }}",
    "{{ messages | selectattr('role', 'equalto', 'user') | list | length }} {{ messages | rejectattr('role', 'equalto', 'tool') | map(attribute='role') | join(',') }}",
    "{{ messages | map(attribute='tool_call_id', default='none') | list }} {{ words | map('upper') | join }} {{ items | select('odd') | list }}",
    "{{ items | sort }} {{ words | sort }} {{ words | sort(case_sensitive=true) }} {{ items | sort(reverse=true) }} {{ messages | sort(attribute='role') | map(attribute='role') | join(' ') }}",
    "{{ items | first }} {{ items | last }} {{ items | sum }} {{ items | min }} {{ items | max }} {{ words | unique | list }} {{ items | reverse | list }}",
    "{{ missing | default('fallback') }} {{ '' | default('empty', true) }} {{ none | default('kept') }} {{ missing | d('d') }}",
    "{{ nested.a | items | list }} {{ 'abc' | list }} {{ 42 | string }} {{ '42' | int + 1 }} {{ '3.5' | float }} {{ 3.7 | int }} {{ 'x' | int }}",
    "{{ 'hello world' | title }} {{ 'hELLO' | capitalize }} {{ 2.567 | round(2) }} {{ 2.5 | round }} {{ -3 | abs }}",
    "{{ 'a\\nb\\nc' | indent(2) }}|{{ 'a\\n\\nb' | indent(2, true) }}|{{ 'x' | indent(first=true) }}",
    "{{ '<b>\"&' | e }} {{ 'one two  three' | wordcount }} {{ '%s-%s' | format('a', 1) }} {{ '%d items' % 3 }}",
    "{{ items | join(', ') }} {{ messages | join('|', attribute='role') }} {{ nested.a.b | batch(1) | list }}",
    "{{ {'b': 2, 'a': 1} | dictsort }} {{ messages | map(attribute='role') | unique | list | count }}",
    # tests
    "{{ name is string }} {{ items is iterable }} {{ nested is mapping }} {{ 1 is number }} {{ 1.5 is float }} {{ 1 is integer }} {{ true is boolean }}",
    "{{ missing is defined }} {{ missing is undefined }} {{ none is none }} {{ name is not none }} {{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }}",
    "{{ 'user' is equalto 'user' }} {{ items is sequence }} {{ greet is defined }} {{ 1 is sameas 1 }} {{ flag is true }} {{ count is false }}",
    "{{ messages | selectattr('tool_calls', 'defined') | list | length }} {{ 'abc' is lower }} {{ 'ABC' is upper }} {{ 2 is in items }}",
    # methods
    "{{ text.strip() }}|{{ text.lstrip() }}|{{ text.rstrip() }}|{{ 'xxhixx'.strip('x') }}|{{ '\\n\\nhi'.lstrip('\\n') }}",
    "{{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }} {{ 'a b c'.split(' ', 1) }} {{ 'a.b.c'.rsplit('.', 1) }} {{ 'l1\\nl2\\n'.splitlines() }}",
    "{{ 'hello'.startswith('he') }} {{ 'hello'.endswith(('lo', 'x')) }} {{ 'Hello'.upper() }} {{ 'a-b-c'.replace('-', '', 1) }} {{ 'hello'.find('l') }} {{ 'hello'.count('l') }}",
    "{{ ', '.join(words) }} {{ '{} and {}'.format('x', 'y') }} {{ 'think</think>answer'.split('</think>')[-1] }} {{ 'a'.title() }}",
    "{{ nested.get('a') is mapping }} {{ nested.get('zz', 'dflt') }} {{ nested.keys() | list }} {{ nested.a.values() | list | length }}",
    "{{ messages[0].content[:5] }} {{ items.index(2) }} {{ '  x'.isspace() }} {{ '123'.isdigit() }}",
    # code points as Python compares them, and Python's formatting
    "{{ 'caf\u00e9' == 'cafe\u0301' }} {{ 'e\u0301' in 'cafe' }} {{ 'e' in 'cafe\u0301' }} {{ 'e\u0301x'.startswith('e') }} {{ 'a\u0301'.endswith('\u0301') }}",
    "{{ 'e\u0301x'.removeprefix('e') | length }} {{ '\u00e9' in ['e\u0301'] }} {{ {'e\u0301': 1}['\u00e9'] is defined }}",
    "{{ '%5.2f|%-6s|%03d|%+d|%x|%.3s|%5s' % (3.14159, 'ab', 7, 4, 255, 'abcdef', 'xy') }} {{ '%.2f %.1f %.0f' % (2.675, 0.25, 0.5) }}",
    "{{ '%e %g %.3g' % (12345.678, 0.0001, 2.0 / 3) }} {{ '%s %r' % ('q', 'q') }} {{ '%d' % 3.99 }} {{ '%d' % -3.99 }}",
    "{{ \"they're bill's-x (y) a.b\" | title }} {{ \"they're bill's-x (y) a.b\".title() }} {{ '\u01c6x'.title() }}",
    "{{ (1,) }} {{ (1, 2,) }} {{ () }} {{ ('a',) | length }}",
    "{{ '  a  b  '.split(none, 0) }} {{ '  a  b  '.split(none, 1) }} {{ 'a  b'.rsplit(none, 1) }} {{ 'x\x1cy\r\nz\u2028w'.splitlines() }}",
    "{{ 'abc'.replace('', '-', 0) }} {{ 'abc'.replace('', '-', 2) }} {{ 'abc'.replace('', '-') }}",
    "{{ messages | sort(attribute='content', reverse=true) | map(attribute='role') | join(' ') }} {{ [('b', 1), ('a', 1), ('c', 0)] | sort(attribute=1, reverse=true) }}",
    "{{ {'b': 1, 'a': 1, 'c': 0} | dictsort(by='value', reverse=true) }}",
    "{% set c = cycler('x', 'y') %}{{ c.current }}{{ c.next() }}{{ c.current }}{{ c.next() }}{{ c.next() }}{{ c.current }}",
    "{{ ['\x00\x7f\x85\xa0\u00ad\u2028\ue000\U0001f600 \u00e9'] }} {{ \"it's\" }} {{ ['it\\'s \"q\"'] }}",
    "{{ 10 is divisibleby(-1) }} {{ -9 % -1 }} {{ 3 ** 39 }} {{ -9223372036854775807 - 1 }}",
    # errors
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}",
    "{{ items.append(4) }}",
    "{{ missing.attribute }}",
    "{{ 'a' + 1 }}",
    "{% set x.y = 1 %}",
    "{{ range(3) | list }} {{ range(1, 7, 2) | list }} {% for i in range(2) %}{{ i }}{% endfor %}",
    "{{ dict(a=1, b='x') }} {{ namespace(a=1).a }}",
]


def main():
    env = environment()
    results = []
    for source in CASES:
        case = {"template": source}
        try:
            case["rendered"] = env.from_string(source).render(**CONTEXT)
            case["error"] = None
        except Exception as error:  # noqa: BLE001 — the case records which kind of error Jinja raised
            case["rendered"] = None
            case["error"] = type(error).__name__ + ": " + str(error)
        results.append(case)
    with open(sys.argv[1], "w") as handle:
        json.dump({"jinja2_version": jinja2.__version__, "context": CONTEXT, "cases": results}, handle, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
