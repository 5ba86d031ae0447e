#!/usr/bin/env python3
"""Reference renderings of chat templates by Python jinja2, for tests/unit/chat_template_test.cpp.

    python3 tools/make_chat_reference.py

Renders with the environment HF transformers builds in apply_chat_template
(ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) with loop controls, a
{% generation %} tag, `raise_exception`, `strftime_now`, and `tojson` = json.dumps(x,
ensure_ascii=False, ...)), and writes:

  tests/data/chat/<model>.json   the model's tokenizer.chat_template (its sha256; the text itself
                                 only when the GGUF carries none), bos/eos token text, and
                                 conversations with the expected prompt or the expected error
  tests/data/chat/jinja_cases.json  small templates exercising the general Jinja features
                                 (whitespace control, loops, filters, tests, scoping, undefined,
                                 errors), each with the expected output or error

The context of every case is stored as written here (JSON, key order kept): the C++ test renders
exactly it. Model files come from ~/.cache/stepq/models (STEPQ_MODELS overrides).
"""
import hashlib, json, os, sys
from datetime import datetime

import gguf
import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "tests", "data", "chat")
MODELS_DIR = os.environ.get("STEPQ_MODELS", os.path.expanduser("~/.cache/stepq/models"))

MODELS = {
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3": "gemma-3-270m-q4_k_m.gguf",
    "qwen0.5b": "qwen2.5-coder-0.5b-instruct.gguf",
    "qwen1.5b": "qwen2.5-coder-1.5b-instruct.gguf",
}

# gemma-3-270m-q4_k_m.gguf is the base (pretrained) model and has no tokenizer.chat_template. Its
# instruction-tuned siblings (google/gemma-3-*-it, tokenizer_config.json "chat_template") use this
# one; we test against it so the Gemma turn format and its raise_exception are covered.
GEMMA3_IT_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\\n'}}
{%- endif -%}
"""


class GenerationTag(jinja2.ext.Extension):
    """transformers' {% generation %}...{% endgeneration %} (AssistantTracker): renders the body."""
    tags = {"generation"}

    def parse(self, parser):
        next(parser.stream)
        return parser.parse_statements(["name:endgeneration"], drop_needle=True)


def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


ENV = make_env()


def render_case(template, context):
    """{"expected": text} or {"error": message[, "error_line": n for syntax errors]}."""
    try:
        compiled = ENV.from_string(template)
    except jinja2.exceptions.TemplateSyntaxError as e:
        return {"error": f"{type(e).__name__}: {e.message}", "error_line": e.lineno}
    except SyntaxError as e:  # jinja2 compiles to Python: `{% break %}` outside a loop fails there
        return {"error": f"{type(e).__name__}: {e.msg}"}
    try:
        return {"expected": compiled.render(**context)}
    except Exception as e:  # noqa: BLE001 - any Python error is an expected render error
        return {"error": f"{type(e).__name__}: {e}"}


def sha256_text(s):
    return hashlib.sha256(s.encode("utf-8")).hexdigest()


def gguf_string(reader, key):
    f = reader.fields.get(key)
    if f is None:
        return None
    return bytes(f.parts[f.data[0]]).decode("utf-8")


def gguf_token(reader, key):
    f = reader.fields.get(key)
    if f is None:
        return None
    tid = int(f.parts[f.data[0]][0])
    toks = reader.fields["tokenizer.ggml.tokens"]
    return bytes(toks.parts[toks.data[tid]]).decode("utf-8")


# ---- conversations for the real templates -------------------------------------------------------

def msgs(*pairs):
    return [{"role": r, "content": c} for r, c in pairs]


PLAIN_CONVERSATIONS = [
    ("single_user", msgs(("user", "Hello!")), True),
    ("single_user_no_gen", msgs(("user", "Hello!")), False),
    ("system_user", msgs(("system", "You are a terse assistant."), ("user", "What is 2+2?")), True),
    ("multi_turn", msgs(("user", "Hi"), ("assistant", "Hello! How can I help?"), ("user", "Tell me a joke."),
                         ("assistant", "Why did the chicken cross the road?"), ("user", "Why?")), True),
    ("system_multi_turn_no_gen", msgs(("system", "Be brief."), ("user", "Name a colour."), ("assistant", "Blue.")),
     False),
    ("unicode", msgs(("user", "Grüße aus Köln — 你好，世界! 🚀 ñ é ü"), ("assistant", "こんにちは 👋"),
                     ("user", "Ελληνικά; العربية")), True),
    ("jinja_looking_content", msgs(("user", "Render {{ x }} and {% if y %}z{% endif %} {# c #} literally.")), True),
    ("whitespace_content", msgs(("user", "  padded with spaces and newlines\n\n"), ("assistant", "\tanswer\n")), True),
    ("empty_content", msgs(("user", "")), True),
]

QWEN_TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Get the weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"},
                                                          "unit": {"type": "string", "enum": ["C", "F"]}},
                       "required": ["city"]}}},
]
QWEN_EXTRA = [
    ("tools_no_system", {"messages": msgs(("user", "Weather in Paris?")), "tools": QWEN_TOOLS}),
    ("tools_with_system", {"messages": msgs(("system", "You are a weather bot."), ("user", "Weather in Zürich?")),
                           "tools": QWEN_TOOLS}),
    ("tool_call_round_trip", {"messages": [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}},
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Rome"}}}]},
        {"role": "tool", "content": "{\"temp\": 21}"},
        {"role": "tool", "content": "{\"temp\": 25.5}"},
        {"role": "assistant", "content": "Paris 21°C, Rome 25.5°C."},
        {"role": "user", "content": "Thanks"}], "tools": QWEN_TOOLS}),
    ("assistant_tool_call_with_content", {"messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"name": "get_weather", "arguments": {"city": "Oslo"}}]},
        {"role": "tool", "content": "cold"}]}),
    ("second_system_message", {"messages": msgs(("system", "First."), ("user", "Hi"), ("system", "Second system."),
                                                ("user", "Again"))}),
]

GEMMA_EXTRA = [
    ("content_parts", {"messages": [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "  Describe this image.  "}]}]}),
    ("system_content_parts", {"messages": [
        {"role": "system", "content": [{"type": "text", "text": "Be kind."}]},
        {"role": "user", "content": "Hi"}]}),
    ("error_roles_not_alternating", {"messages": msgs(("user", "a"), ("user", "b"))}),
    ("error_assistant_first", {"messages": msgs(("assistant", "I start"), ("user", "no"))}),
    ("error_invalid_content_type", {"messages": [{"role": "user", "content": 42}]}),
]


def model_cases(name, reader):
    bos = gguf_token(reader, "tokenizer.ggml.bos_token_id")
    eos = gguf_token(reader, "tokenizer.ggml.eos_token_id")
    cases = []
    for case_name, messages, gen in PLAIN_CONVERSATIONS:
        ctx = {"messages": messages, "tools": None, "documents": None, "add_generation_prompt": gen,
               "bos_token": bos, "eos_token": eos}
        cases.append({"name": case_name, "plain": True, "context": ctx})
    extra = QWEN_EXTRA if name.startswith("qwen") else GEMMA_EXTRA if name == "gemma3" else []
    for case_name, partial in extra:
        ctx = {"messages": partial["messages"], "tools": partial.get("tools"), "documents": None,
               "add_generation_prompt": True, "bos_token": bos, "eos_token": eos}
        cases.append({"name": case_name, "plain": False, "context": ctx})
    return bos, eos, cases


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {os.path.relpath(path, ROOT)} ({os.path.getsize(path)} bytes)")


def make_model_reference(name, file):
    path = os.path.join(MODELS_DIR, file)
    reader = gguf.GGUFReader(path)
    template = gguf_string(reader, "tokenizer.chat_template")
    in_gguf = template is not None
    if not in_gguf:
        if name != "gemma3":
            sys.exit(f"{path} has no tokenizer.chat_template")
        template = GEMMA3_IT_TEMPLATE
    bos, eos, cases = model_cases(name, reader)
    for c in cases:
        c.update(render_case(template, c["context"]))
    out = {
        "model": name,
        "gguf_file": file,
        "template_in_gguf": in_gguf,
        "template_sha256": sha256_text(template),
        "bos_token": bos,
        "eos_token": eos,
        "jinja2_version": jinja2.__version__,
        "cases": cases,
    }
    if not in_gguf:
        out["template_source"] = ("the GGUF has no tokenizer.chat_template (base model); this is the chat_template "
                                  "of google/gemma-3-*-it tokenizer_config.json")
        out["template"] = template
    write_json(os.path.join(OUT, f"{name}.json"), out)


# ---- general Jinja cases ------------------------------------------------------------------------

MSGS = msgs(("system", "sys"), ("user", "u1"), ("assistant", "a1"), ("user", "u2"))

GENERAL = [
    # Text, whitespace control, trim_blocks / lstrip_blocks.
    ("text_only", "Hello, world!", {}),
    ("trailing_newline_dropped", "line\n", {}),
    ("only_one_trailing_newline_dropped", "line\n\n", {}),
    ("crlf_normalized", "a\r\nb\rc\r\n", {}),
    ("print_basic", "Hi {{ name }}!", {"name": "Ann"}),
    ("trim_blocks", "{% if true %}\nyes\n{% endif %}\nafter", {}),
    ("trim_blocks_not_after_print", "{{ 'x' }}\ny", {}),
    ("lstrip_blocks", "a\n    {% if true %}\n    b\n    {% endif %}\nc", {}),
    ("lstrip_not_for_print", "a\n    {{ 'x' }}\n", {}),
    ("lstrip_only_whitespace_before", "a  {% if true %}b{% endif %}", {}),
    ("lstrip_at_template_start", "   {% if true %}b{% endif %}", {}),
    ("lstrip_tabs", "x\n\t \t{% if true %}y{% endif %}", {}),
    ("minus_left", "a   \n  {%- if true %}b{% endif %}", {}),
    ("minus_right", "{% if true -%}   \n\n  b{% endif %}", {}),
    ("minus_print", "a  {{- 'b' -}}  \n c", {}),
    ("plus_disables_lstrip", "a\n    {%+ if true %}b{% endif %}", {}),
    ("plus_disables_trim", "{% if true +%}\nb{% endif %}", {}),
    ("comment", "a{# a comment #}b", {}),
    ("comment_trim_and_lstrip", "a\n   {# note #}\nb", {}),
    ("comment_minus", "a   {#- note -#}   b", {}),
    ("comment_multiline", "x{# line1\n line2 #}y", {}),
    ("raw_block", "{% raw %}{{ not evaluated }}{% endraw %}", {}),
    ("raw_block_whitespace", "a\n  {% raw %}\n{{ x }}\n  {% endraw %}\nb", {}),
    ("line_starting_after_minus", "{{ 'a' -}}\n   {% if true %}b{% endif %}", {}),
    ("nested_blocks_indented", "{% for i in [1, 2] %}\n  {% if i > 1 %}\n    big {{ i }}\n  {% else %}\n    small {{ i }}\n  {% endif %}\n{% endfor %}\n", {}),
    ("brace_in_text", "a { b } c {x} }} %}", {}),
    ("dict_literal_braces_in_print", "{{ {'a': {'b': 1}}['a']['b'] }}", {}),
    # Literals and printing.
    ("print_none_bool", "{{ none }}|{{ None }}|{{ true }}|{{ False }}", {}),
    ("print_numbers", "{{ 42 }} {{ -7 }} {{ 3.5 }} {{ 1.0 }} {{ 1e3 }} {{ 2.5e-3 }} {{ 1_000 }} {{ 0x1F }} {{ 0b101 }} {{ 0o17 }}", {}),
    ("print_float_repr", "{{ 1/3 }} {{ 1e16 }} {{ 1e15 }} {{ 0.0001 }} {{ 0.00001 }} {{ 0.1 + 0.2 }} {{ 2.0 ** 70 }} {{ -0.0 }}", {}),
    ("print_list_dict_tuple", "{{ [1, 'a', none, true, 1.5] }} {{ {'k': 'v', 'n': [1]} }} {{ (1, 'x') }} {{ ('one',) }} {{ () }}", {}),
    ("print_string_repr_quotes", "{{ ['it\\'s', \"q\\\"\", 'both\\'\"', 'tab\\tnl\\n', 'back\\\\slash', 'é'] }}", {}),
    ("print_tuple_expression", "{{ 1, 2 }}", {}),
    ("string_escapes", "{{ 'a\\nb\\tc\\\\d\\'e\\\"f\\x41\\u00e9\\U0001F600\\101\\q' }}", {}),
    ("adjacent_string_literals", "{{ 'ab' 'cd' \"ef\" }}", {}),
    ("context_json_values", "{{ i }} {{ f }} {{ b }} {{ n }} {{ s }} {{ l }} {{ d }}",
     {"i": 3, "f": 2.5, "b": False, "n": None, "s": "str", "l": [1, [2, 3]], "d": {"z": 1, "a": {"b": None}}}),
    ("context_float_integral", "{{ f }} {{ f|tojson }} {{ big }}", {"f": 2.0, "big": 12345678901234}),
    # Operators.
    ("arithmetic", "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 2 ** 10 }}", {}),
    ("arithmetic_float", "{{ 7.5 // 2 }} {{ -7.5 // 2 }} {{ 5.5 % 2 }} {{ -5.5 % 2 }} {{ 1 + 2.0 }} {{ 3 * 1.5 }} {{ 2 ** -1 }} {{ 10 / 4 }}", {}),
    ("pow_and_unary_precedence", "{{ -2 ** 2 }} {{ 2 ** 3 ** 2 }} {{ - 3 + 5 }} {{ +4 }}", {}),
    ("bool_arithmetic", "{{ true + 1 }} {{ false * 3 }} {{ true == 1 }} {{ 1 == 1.0 }}", {}),
    ("string_ops", "{{ 'a' + 'b' }} {{ 'ab' * 3 }} {{ 2 * 'xy' }} {{ 'n=' ~ 5 ~ none ~ true }} {{ 'x' ~ undefined_var ~ 'y' }}", {}),
    ("list_ops", "{{ [1, 2] + [3] }} {{ [0] * 3 }} {{ (1,) + (2,) }}", {}),
    ("comparisons", "{{ 1 < 2 }} {{ 2 <= 2 }} {{ 3 > 4 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ 1 == 1 }} {{ 'a' != 'a' }}", {}),
    ("comparison_chain", "{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 == 1 == 1 }} {{ 1 < 3 > 2 }}", {}),
    ("equality_types", "{{ (1, 2) == [1, 2] }} {{ [1, 2] == [1, 2] }} {{ {'a': 1, 'b': 2} == {'b': 2, 'a': 1} }} {{ none == none }} {{ 'a' == 1 }}", {}),
    ("in_operator", "{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 'z' not in 'abc' }} {{ not 1 in [1] }} {{ 'x' in missing }}", {}),
    ("logic_returns_operands", "{{ none or 'default' }} {{ 'a' and 'b' }} {{ 0 and 'never' }} {{ '' or 0 or [] }}|{{ not '' }} {{ not 'x' }}", {}),
    ("truthiness", "{% for v in [0, 1, '', 'a', [], [0], {}, {'a': 1}, none, 0.0, 0.5] %}{{ 'T' if v else 'F' }}{% endfor %}", {}),
    ("cond_expr", "{{ 'yes' if 1 else 'no' }} {{ 'yes' if 0 else 'no' }} [{{ 'only' if false }}] {{ 'a' if false else 'b' if true else 'c' }}", {}),
    ("cond_expr_filter_precedence", "{{ 'x' ~ 'y' | upper if true }} {{ ('x' ~ 'y') | upper }}", {}),
    # Attribute / item / slice.
    ("subscript_and_attribute", "{{ m['role'] }} {{ m.role }} {{ m.content }} {{ l[0] }} {{ l[-1] }} {{ l.1 }} {{ s[1] }} {{ s[-1] }}",
     {"m": {"role": "user", "content": "hi"}, "l": [10, 20, 30], "s": "héllo"}),
    ("nested_lookup", "{{ d.a.b[1].c }}", {"d": {"a": {"b": [{"c": 1}, {"c": "deep"}]}}}),
    ("slices", "{{ l[1:] }} {{ l[:2] }} {{ l[::2] }} {{ l[::-1] }} {{ l[-2:] }} {{ l[1:-1] }} {{ l[5:] }} {{ s[1:4] }} {{ s[::-1] }}",
     {"l": [1, 2, 3, 4, 5], "s": "naïve✓"}),
    ("slice_messages", "{% for m in messages[1:] %}{{ m.role }},{% endfor %}", {"messages": MSGS}),
    ("method_over_key", "{{ d.items is defined }} {{ d['items'] }} {{ d.get('items') }} {{ d.keys()|list }}", {"d": {"items": "I"}}),
    ("missing_key_is_undefined", "[{{ m.nothing }}] {{ m.nothing is defined }} {{ m['nothing'] is undefined }} [{{ l[10] }}]",
     {"m": {"a": 1}, "l": [1]}),
    # String methods.
    ("str_methods_case", "{{ 'Hello World'.upper() }} {{ 'Hello World'.lower() }} {{ 'hello wORLD'.title() }} {{ 'hELLO'.capitalize() }} {{ 'AbC'.swapcase() }} {{ 'éa'.upper() }}", {}),
    ("str_methods_strip", "[{{ '  x  '.strip() }}] [{{ '  x  '.lstrip() }}] [{{ '  x  '.rstrip() }}] [{{ 'xxhixx'.strip('x') }}] [{{ '\\n\\t y \\u3000'.strip() }}]", {}),
    ("str_methods_split", "{{ 'a b  c '.split() }} {{ 'a,b,,c'.split(',') }} {{ 'a,b,c'.split(',', 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ '  a  b  '.split(none, 1) }} {{ 'l1\\nl2\\r\\nl3'.splitlines() }}", {}),
    ("str_methods_find", "{{ 'hello'.startswith('he') }} {{ 'hello'.endswith('lo') }} {{ 'hello'.startswith(('x', 'h')) }} {{ 'héllo'.find('l') }} {{ 'hello'.find('z') }} {{ 'hello'.count('l') }} {{ 'hello'.rfind('l') }}", {}),
    ("str_methods_replace_join", "{{ 'a-b-c'.replace('-', '+') }} {{ 'a-b-c'.replace('-', '', 1) }} {{ ', '.join(['x', 'y']) }} {{ 'ab'.replace('', '.') }}", {}),
    ("str_methods_misc", "{{ 'ab'.center(6, '*') }} {{ 'ab'.ljust(4, '.') }}|{{ 'ab'.rjust(4) }} {{ '42'.zfill(5) }} {{ '12'.isdigit() }} {{ 'ab'.isalpha() }} {{ '  '.isspace() }} {{ 'AB'.isupper() }} {{ 'ab'.islower() }}", {}),
    ("str_format_method", "{{ '{} + {} = {}'.format(1, 2, 3) }} {{ '{0}{1}{0}'.format('a', 'b') }} {{ 'hi {name}'.format(name='bob') }}", {}),
    # Filters.
    ("filter_trim", "[{{ '  a b  ' | trim }}] [{{ 'xxaxx' | trim('x') }}] [{{ none | trim }}]", {}),
    ("filter_case", "{{ 'abc' | upper }} {{ 'ABC' | lower }} {{ 'hello WORLD' | capitalize }} {{ \"hello world's-end (x)\" | title }}", {}),
    ("filter_length", "{{ [1, 2, 3] | length }} {{ 'héllo' | length }} {{ {'a': 1} | length }} {{ '' | count }}", {}),
    ("filter_default", "{{ missing | default('dflt') }} {{ none | default('x') }} {{ '' | default('empty', true) }} {{ 0 | d(5, boolean=true) }} {{ 'set' | default('no') }} [{{ missing | default }}]", {}),
    ("filter_join", "{{ [1, 2, 3] | join }} {{ ['a', 'b'] | join(', ') }} {{ users | join(' ', attribute='name') }} {{ 'abc' | join('-') }}",
     {"users": [{"name": "x"}, {"name": "y"}]}),
    ("filter_first_last", "{{ [1, 2, 3] | first }} {{ [1, 2, 3] | last }} {{ 'abc' | first }} {{ 'abc' | last }} [{{ [] | first }}] {{ {'k': 1, 'j': 2} | first }}", {}),
    ("filter_list", "{{ 'ab' | list }} {{ {'a': 1, 'b': 2} | list }} {{ (1, 2) | list }}", {}),
    ("filter_replace", "{{ 'aaa' | replace('a', 'b') }} {{ 'aaa' | replace('a', 'b', 2) }} {{ 5 | replace('5', 'five') }}", {}),
    ("filter_string_int_float", "{{ 5 | string }} {{ [1] | string }} {{ '42' | int + 1 }} {{ '3.9' | int }} {{ 'x' | int }} {{ 'x' | int(7) }} {{ 3.7 | int }} {{ '1.5' | float }} {{ 'x' | float }} {{ 2 | float }} {{ '0x1f' | int(base=16) }} {{ ' 12 ' | int }}", {}),
    ("filter_items", "{% for k, v in d | items %}{{ k }}={{ v }};{% endfor %} {{ d | items | list }}", {"d": {"b": 1, "a": [2]}}),
    ("filter_dictsort", "{{ d | dictsort }} {{ d | dictsort(reverse=true) }} {{ d | dictsort(by='value') }}", {"d": {"b": 3, "a": 2, "C": 1}}),
    ("filter_sort_unique", "{{ [3, 1, 2] | sort }} {{ [3, 1, 2] | sort(reverse=true) }} {{ ['b', 'A', 'a', 'C'] | sort }} {{ ['b', 'A', 'a'] | sort(case_sensitive=true) }} {{ [1, 2, 1, 3] | unique | list }} {{ ['a', 'A', 'b'] | unique | list }}", {}),
    ("filter_sort_attribute", "{{ users | sort(attribute='age') | map(attribute='name') | join(',') }}",
     {"users": [{"name": "a", "age": 30}, {"name": "b", "age": 20}, {"name": "c", "age": 25}]}),
    ("filter_min_max_sum", "{{ [3, 1, 2] | min }} {{ [3, 1, 2] | max }} {{ [1, 2, 3] | sum }} {{ [0.5, 1] | sum }} {{ items | sum(attribute='n') }} {{ ['b', 'A'] | max }}",
     {"items": [{"n": 1}, {"n": 4}]}),
    ("filter_reverse_abs_round", "{{ 'abc' | reverse }} {{ [1, 2, 3] | reverse | list }} {{ -5 | abs }} {{ -2.5 | abs }} {{ 2.567 | round(1) }} {{ 2.5 | round }} {{ 3.5 | round }} {{ 2.567 | round(2, 'floor') }} {{ 2.561 | round(1, 'ceil') }} {{ 7 | round }}", {}),
    ("filter_map", "{{ ['a', 'b'] | map('upper') | list }} {{ users | map(attribute='name') | join('/') }} {{ [1, 2] | map('string') | list }} {{ users | map(attribute='missing', default='?') | list }} {{ ['a b', 'c'] | map('replace', ' ', '_') | list }}",
     {"users": [{"name": "x"}, {"name": "y"}]}),
    ("filter_select_reject", "{{ [1, 2, 3, 4] | select('odd') | list }} {{ [1, 2, 3, 4] | reject('odd') | list }} {{ [0, 1, '', 'a'] | select | list }} {{ [1, 5, 10] | select('gt', 3) | list }} {{ ['a', 'b'] | select('in', ['b', 'c']) | list }}", {}),
    ("filter_selectattr", "{{ messages | selectattr('role', 'equalto', 'user') | map(attribute='content') | join(',') }} {{ messages | rejectattr('role', 'eq', 'user') | list | length }} {{ flags | selectattr('on') | map(attribute='n') | list }}",
     {"messages": MSGS, "flags": [{"n": 1, "on": True}, {"n": 2, "on": False}, {"n": 3}]}),
    ("filter_center_indent_wordcount", "[{{ 'ab' | center(6) }}] {{ 'a\\nb\\n\\nc' | indent(2) }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb' | indent(2, blank=true) }}|{{ 'one two, three' | wordcount }}", {}),
    ("filter_escape_safe_attr", "{{ '<a href=\"x\">&\\'</a>' | e }} {{ '<b>' | safe }} {{ d | attr('k') }}", {"d": {"k": "v"}}),
    ("filter_batch_slice", "{{ l | batch(3) | list }} {{ l | batch(3, 'x') | list }} {{ l | slice(3) | list }} {{ l | slice(3, 'x') | list }} {{ [1, 2, 3] | slice(3, 0) | list }} {{ [1] | slice(3) | list }}",
     {"l": [1, 2, 3, 4, 5, 6, 7]}),
    ("lazy_filters_are_truthy", "{{ 'T' if [] | select else 'F' }} {{ 'T' if [] | map('upper') else 'F' }} {{ 'T' if missing | reverse else 'F' }} {{ 'T' if [] | unique else 'F' }} {{ 'T' if [] | selectattr('x') | list else 'F' }}", {}),
    ("error_slice_int", "{{ n[1:] }}", {"n": 5}),
    ("error_slice_dict", "{{ d[1:] }}", {"d": {"a": 1}}),
    ("percent_format", "{{ '%s-%s' % (1, 'a') }} {{ '%d|%5.2f|%-4s|%04d|%x|%r' % (3.9, 2.5, 'ab', 7, 255, 'q') }} {{ '%(a)s=%(b)d' % {'a': 'k', 'b': 2} }} {{ '100%%' % () }} {{ '%s' % [1, 2] }} {{ 'x' % {} }} {{ '%c%c' % (72, 'i') }} {{ '%e %g %G' % (12345.678, 0.00001234, 1e20) }} {{ '%#o %#x %+d % d' % (8, 255, 5, 5) }}", {}),
    ("filter_format", "{{ '%s and %s' | format('a', 'b') }} {{ '%(x)s!' | format(x='kw') }} {{ '%.3s' | format('abcdef') }}", {}),
    ("tests_filter_test_names", "{{ 'upper' is filter }} {{ 'nope' is filter }} {{ 'odd' is test }} {{ 'nope' is test }}", {}),
    ("lazy_filter_errors_deferred", "{% set g = 5 | map('upper') %}ok {{ 'T' if g else 'F' }} {% set h = none | select %}{{ 'T' if h else 'F' }}", {}),
    ("error_lazy_filter_consumed", "{% set g = 5 | map('upper') %}{{ g | list }}", {}),
    ("error_generator_tojson", "{{ [1, 2] | map('string') | tojson }}", {}),
    ("error_generator_plus_list", "{{ [1] | select + [2] }}", {}),
    ("error_percent_not_all_converted", "{{ 'x' % 5 }}", {}),
    ("error_percent_not_enough", "{{ '%s %s' % ('a',) }}", {}),
    ("error_percent_bad_type", "{{ '%d' % 'a' }}", {}),
    ("error_unknown_filter_dotted", "{{ x | sort.b }}", {}),
    ("filter_chain", "{{ '  Hello  ' | trim | lower | replace('l', 'L') | length }}", {}),
    ("filter_block", "{% filter upper %}shout {{ 'this' }}{% endfilter %}", {}),
    # tojson.
    ("tojson_basic", "{{ d | tojson }}", {"d": {"b": 1, "a": [True, False, None, 1.5, "x"], "c": {"nested": "é\n\"q\""}}}),
    ("tojson_key_order_and_unicode", "{{ d | tojson }}", {"d": {"zeta": "日本", "alpha": "😀", "ctrl": "\u0001\u001f\u007f", "esc": "\\/"}}),
    ("tojson_indent", "{{ d | tojson(indent=2) }}|{{ [] | tojson(indent=2) }}|{{ {} | tojson(indent=4) }}|{{ [1, [2, {}]] | tojson(indent=1) }}", {"d": {"a": [1, 2], "b": {"c": None}}}),
    ("tojson_options", "{{ d | tojson(separators=(',', ':')) }} {{ d | tojson(sort_keys=true) }} {{ 'é😀' | tojson(ensure_ascii=true) }} {{ d | tojson(indent='\\t') }}", {"d": {"b": 1, "a": 2}}),
    ("tojson_scalars", "{{ 'str' | tojson }} {{ 1 | tojson }} {{ 1.0 | tojson }} {{ none | tojson }} {{ true | tojson }} {{ (1, 2) | tojson }} {{ 1e100 | tojson }} {{ 0.1 | tojson }}", {}),
    ("tojson_floats_from_context", "{{ v | tojson }}", {"v": [0.1, 1e-7, 123456789.125, 3.0, -2.5e+20]}),
    # Tests.
    ("tests_types", "{{ 'a' is string }} {{ 1 is number }} {{ 1.5 is number }} {{ true is number }} {{ 1 is integer }} {{ true is integer }} {{ 1.0 is float }} {{ true is boolean }} {{ none is none }} {{ {} is mapping }} {{ [] is mapping }}", {}),
    ("tests_iterable_sequence", "{{ [] is iterable }} {{ 'a' is iterable }} {{ {} is iterable }} {{ 1 is iterable }} {{ none is iterable }} {{ missing is iterable }} {{ [] is sequence }} {{ 1 is sequence }}", {}),
    ("tests_defined", "{{ x is defined }} {{ y is defined }} {{ y is undefined }} {{ x is not defined }} {{ d.k is defined }} {{ d.z is defined }}", {"x": None, "d": {"k": 0}}),
    ("tests_numbers", "{{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 9 is divisibleby(4) }} {{ 1 is eq 1 }} {{ 2 is gt 1 }} {{ 2 is lt 1 }} {{ 2 is ge 2 }} {{ 2 is le 1 }} {{ 1 is ne 2 }} {{ 2 is greaterthan 1 }}", {}),
    ("tests_misc", "{{ 1 is in [1, 2] }} {{ none is sameas none }} {{ true is true }} {{ 0 is false }} {{ 'ab' is lower }} {{ 'AB' is upper }} {{ raise_exception is callable }} {{ 'x' is callable }} {{ 'x' is escaped }}", {}),
    ("test_precedence", "{{ not x is defined }} {{ 1 + 1 is odd }} {{ x is defined and x }} {{ x is none or 1 }}", {"x": 0}),
    # If.
    ("if_elif_else", "{% for n in [1, 2, 3] %}{% if n == 1 %}one{% elif n == 2 %}two{% else %}many{% endif %},{% endfor %}", {}),
    ("if_tuple_condition", "{% if () %}empty{% else %}falsy{% endif %} {% if 1, %}tuple{% endif %}", {}),
    # For.
    ("for_loop_vars", "{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}", {}),
    ("for_prev_next", "{% for x in [1, 2, 3] %}[{{ loop.previtem }}|{{ loop.nextitem }}]{% endfor %}", {}),
    ("for_else", "{% for x in [] %}x{% else %}empty{% endfor %} {% for x in missing %}x{% else %}undefined iterates empty{% endfor %}", {}),
    ("for_filter", "{% for x in range(10) if x is odd %}{{ x }}:{{ loop.index }}/{{ loop.length }} {% endfor %}", {}),
    ("for_filter_all_out_else", "{% for x in [1, 2] if x > 5 %}{{ x }}{% else %}none{% endfor %}", {}),
    ("for_unpack", "{% for k, v in d.items() %}{{ k }}={{ v }} {% endfor %}{% for a, b in [[1, 2], (3, 4)] %}{{ a + b }} {% endfor %}", {"d": {"x": 1, "y": 2}}),
    ("for_dict_and_string", "{% for k in d %}{{ k }}{% endfor %} {% for c in 'hé' %}[{{ c }}]{% endfor %}", {"d": {"b": 1, "a": 2}}),
    ("for_nested_loop_access", "{% for a in [1, 2] %}{% set outer = loop %}{% for b in 'xy' %}{{ outer.index }}{{ loop.index }}{{ b }} {% endfor %}{% endfor %}", {}),
    ("for_cycle_changed", "{% for x in [1, 1, 2, 3, 3] %}{{ loop.cycle('a', 'b') }}{% if loop.changed(x) %}!{% endif %}{% endfor %}", {}),
    ("for_depth", "{% for x in [1] %}{{ loop.depth }}{{ loop.depth0 }}{% endfor %}", {}),
    ("for_break_continue", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}", {}),
    ("for_recursive", "{% for n in tree recursive %}{{ n.name }}{% if n.children %}({{ loop(n.children) }}){% endif %}{% endfor %}",
     {"tree": [{"name": "a", "children": [{"name": "b"}, {"name": "c", "children": [{"name": "d"}]}]}, {"name": "e"}]}),
    ("for_range", "{{ range(3) | list }} {{ range(1, 7, 2) | list }} {{ range(5, 0, -2) | list }} {% for i in range(2) %}{{ i }}{% endfor %}", {}),
    ("for_over_messages_roles", "{% for m in messages %}{% if loop.first and m.role != 'system' %}S{% endif %}<{{ m.role }}>{{ m.content }}{% if not loop.last %}\n{% endif %}{% endfor %}", {"messages": MSGS}),
    ("for_index_arithmetic", "{% for m in messages %}{% if loop.index0 > 0 and messages[loop.index0 - 1].role == 'user' %}after-user:{{ m.content }} {% endif %}{% endfor %}", {"messages": MSGS}),
    # Set and scoping.
    ("set_basic", "{% set x = 1 %}{% set y = x + 1 %}{{ x }}{{ y }}{% set a, b = 'p', 'q' %}{{ a }}{{ b }}", {}),
    ("set_in_loop_does_not_leak", "{% set x = 0 %}{% for i in [1, 2] %}[{{ x }}]{% set x = i %}{% endfor %}{{ x }}", {}),
    ("set_in_loop_not_kept_across_iterations", "{% for i in [1, 2] %}[{{ y }}]{% set y = i %}{% endfor %}[{{ y }}]", {}),
    ("set_in_if_leaks", "{% if true %}{% set y = 3 %}{% endif %}{{ y }}", {}),
    ("set_shadows_context", "{{ v }}{% set v = 'local' %}{{ v }}", {"v": "ctx"}),
    ("scope_nested_loop_reads_later_set", "{% for x in range(2) %}{% for k in [1] %}[{{ n }}]{% endfor %}{% set n = 5 %}({{ n }}){% endfor %}", {"n": 7}),
    ("scope_root_nested_read_before_set", "{% for k in [1] %}[{{ n }}]{% endfor %}{% set n = 5 %}{{ n }}", {"n": 7}),
    ("scope_root_read_then_set", "[{{ n }}]{% for k in [1] %}[{{ n }}]{% endfor %}{% set n = 5 %}{{ n }}", {"n": 7}),
    ("scope_partial_if_store_keeps_outer", "{% if false %}{% set n = 1 %}{% endif %}{% for k in [1] %}[{{ n }}]{% endfor %}", {"n": 7}),
    ("scope_if_else_store_keeps_outer", "{% for k in [1] %}[{{ n }}]{% endfor %}{% if c %}{% set n = 1 %}{% else %}{% set n = 2 %}{% endif %}{{ n }}", {"n": 7, "c": True}),
    ("scope_if_elif_else_store_undefined", "{% for k in [1] %}[{{ n }}]{% endfor %}{% if c %}{% set n = 1 %}{% elif d %}{% set n = 3 %}{% else %}{% set n = 2 %}{% endif %}{{ n }}", {"n": 7, "c": True, "d": False}),
    ("scope_macro_reads_later_set", "{% macro m() %}[{{ v }}]{% endmacro %}{{ m() }}{% set v = 'late' %}{{ m() }}", {"v": "ctx"}),
    ("scope_outer_set_aliases", "{% set x = 1 %}{% for i in [1] %}{% for j in [1] %}{{ x }}{% endfor %}{% set x = 2 %}{{ x }}{% endfor %}{{ x }}", {}),
    ("scope_set_block_is_a_frame", "{% set b %}{% set inner = 1 %}{{ inner }}{% endset %}[{{ b }}][{{ inner }}]", {}),
    ("scope_macro_locals", "{% macro m() %}{% set t = 'in' %}{{ t }}{% endmacro %}{{ m() }}[{{ t }}]", {}),
    ("unknown_filter_in_untaken_if", "{% if false %}{{ x | nosuchfilter }}{% endif %}ok {{ 1 if true else x | nosuch }} {% if false %}{{ x is nosuchtest }}{% endif %}", {}),
    ("error_unknown_filter_in_taken_if", "{% if true %}{{ x | nosuchfilter }}{% endif %}", {}),
    ("error_unknown_filter_in_loop", "{% for a in [] %}{{ a | nosuchfilter }}{% endfor %}", {}),
    ("error_unknown_filter_in_loop_in_if", "{% if false %}{% for a in [] %}{{ a | nosuchfilter }}{% endfor %}{% endif %}", {}),
    ("error_unknown_filter_in_macro", "line1\n{% macro m() %}{{ a | nosuchfilter }}{% endmacro %}", {}),
    ("namespace", "{% set ns = namespace(count=0, found=false) %}{% for m in messages %}{% if m.role == 'user' %}{% set ns.count = ns.count + 1 %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.count }} {{ ns.found }}", {"messages": MSGS}),
    ("namespace_last_index", "{% set ns = namespace(last=-1) %}{% for m in messages %}{% if m.role == 'user' %}{% set ns.last = loop.index0 %}{% endif %}{% endfor %}{{ ns.last }}", {"messages": MSGS}),
    ("set_block", "{% set greeting %}Hello {{ name }}!{% endset %}[{{ greeting }}] {% set up | upper | trim %}  shout  {% endset %}[{{ up }}]", {"name": "Bo"}),
    ("with_block", "{% set x = 1 %}{% with x = 2, y = x %}{{ x }}{{ y }}{% endwith %}{{ x }}", {}),
    ("list_aliasing_dict_literal", "{% set d = {'a': [1]} %}{% set e = d %}{{ e.a }} {{ d == e }}", {}),
    ("generation_tag", "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}[{{ m.content }}]{% endgeneration %}{% else %}{{ m.content }}{% endif %}{% endfor %}", {"messages": MSGS}),
    # Macros and call blocks.
    ("macro_basic", "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', '?') }} {{ greet(punct='.', name='C') }}", {}),
    ("macro_sees_later_globals", "{% set x = 1 %}{% macro m() %}{{ x }}{% endmacro %}{% set x = 2 %}{{ m() }}", {}),
    ("macro_varargs_kwargs", "{% macro m(a) %}{{ a }}|{{ varargs }}|{{ kwargs }}{% endmacro %}{{ m(1, 2, 3, k='v') }}", {}),
    ("macro_missing_arg_undefined", "{% macro m(a, b) %}[{{ a }}][{{ b }}]{% endmacro %}{{ m(1) }}", {}),
    ("macro_recursive", "{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * (fact(n - 1) | int) }}{% endif %}{% endmacro %}{{ fact(5) }}", {}),
    ("call_block", "{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap('b') %}bold {{ 1 + 1 }}{% endcall %}", {}),
    ("call_block_args", "{% macro each(items) %}{% for i in items %}{{ caller(i) }}{% endfor %}{% endmacro %}{% call(x) each([1, 2]) %}<{{ x }}>{% endcall %}", {}),
    # Undefined.
    ("undefined_prints_empty", "[{{ nothing }}] [{{ nothing | string }}] [{{ nothing | lower }}] {{ nothing | length }} {{ nothing | list }} [{{ nothing | join(',') }}] {{ nothing == nothing }} {{ nothing != 1 }} {{ not nothing }}", {}),
    ("undefined_from_missing_attr_ok", "[{{ d.missing }}] [{{ d.missing | default('dflt') }}] {{ d.missing is none }}", {"d": {}}),
    ("undefined_if_false", "{% if missing %}yes{% else %}no{% endif %} {% if missing and missing.attr %}x{% endif %}|{% if missing is defined and missing.attr %}x{% endif %}", {}),
    ("strftime_now_exists", "{{ strftime_now is defined }}", {}),
    # Errors.
    ("error_raise_exception", "{% if true %}{{ raise_exception('custom failure: ' ~ 42) }}{% endif %}", {}),
    ("error_undefined_attr", "{{ missing.attr }}", {}),
    ("error_undefined_nested_attr", "{{ d.a.b }}", {"d": {}}),
    ("error_undefined_item", "{{ missing[0] }}", {}),
    ("error_undefined_add", "{{ missing + 'x' }}", {}),
    ("error_undefined_call", "{{ missing() }}", {}),
    ("error_undefined_method", "{{ missing.strip() }}", {}),
    ("error_undefined_tojson", "{{ missing | tojson }}", {}),
    ("error_undefined_compare", "{{ missing < 1 }}", {}),
    ("error_undefined_int", "{{ missing | int }}", {}),
    ("error_undefined_in_string", "{{ missing in 'abc' }}", {}),
    ("error_type_add", "{{ 'a' + 1 }}", {}),
    ("error_type_compare", "{{ 'a' < 1 }}", {}),
    ("error_zero_division", "{{ 1 // 0 }}", {}),
    ("error_zero_division_float", "{{ 1 / 0 }}", {}),
    ("error_not_iterable", "{% for x in 5 %}{% endfor %}", {}),
    ("error_none_not_iterable", "{% for x in none %}{% endfor %}", {}),
    ("error_in_none", "{{ 'a' in none }}", {}),
    ("error_not_callable", "{{ 'abc'() }}", {}),
    ("error_unknown_str_method", "{{ 'abc'.nosuchmethod() }}", {}),
    ("error_immutable_list_append", "{% set l = [] %}{{ l.append(1) }}", {}),
    ("error_immutable_dict_update", "{% set d = {} %}{{ d.update({'a': 1}) }}", {}),
    ("error_set_attr_non_namespace", "{% set d = {} %}{% set d.x = 1 %}", {}),
    ("error_unpack", "{% for a, b in [[1, 2, 3]] %}{% endfor %}", {}),
    ("error_unknown_filter_used", "{{ 'x' | nosuchfilter }}", {}),
    ("error_unknown_test_used", "{{ 'x' is nosuchtest }}", {}),
    ("error_no_last_item_deep", "{{ ([] | first).x }}", {}),
    ("error_syntax_unclosed_block", "line one\n{% if true %}\nno end", {}),
    ("error_syntax_unknown_tag", "ok\nok\n{% frobnicate %}", {}),
    ("error_syntax_bad_expression", "{{ 1 + }}", {}),
    ("error_syntax_unclosed_print", "a\nb {{ x", {}),
    ("error_syntax_unclosed_comment", "a\n{# never closed", {}),
    ("error_syntax_unclosed_string", "{{ 'abc }}", {}),
    ("error_syntax_unbalanced", "{{ (1 + 2 }}", {}),
    ("error_syntax_endfor_mismatch", "{% for x in y %}\n{% endif %}", {}),
    ("error_syntax_else_twice", "{% if a %}{% else %}{% else %}{% endif %}", {}),
    ("error_syntax_assign_literal", "{% set 1 = 2 %}", {}),
    ("error_syntax_break_outside_loop", "{% break %}", {}),
    ("error_syntax_stray_endblock", "text\n{% endfor %}", {}),
    ("error_syntax_bad_char", "{{ a ! b }}", {}),
]


# Larger templates in the style of other model families (written for these tests): reverse loops,
# namespaces, think-tag splitting, tool calls, indented tojson, alternation checks.
QWEN3_STYLE = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\\n\\n' }}
    {%- endif %}
    {{- "# Tools\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in content %}
                {%- set reasoning_content = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}
                {%- set content = content.split('</think>')[-1].lstrip('\\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\\n' + content }}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\\n\\n</think>\\n\\n' }}
    {%- endif %}
{%- endif %}
"""

LLAMA3_STYLE = """{{- bos_token }}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{%- if tools is not none %}
    {{- "You have these functions:\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
        {{- '{"name": "' + tool_call.name + '", ' }}
        {{- '"parameters": ' }}
        {{- tool_call.arguments | tojson }}
        {{- "}" }}
        {{- "<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

MISTRAL_STYLE = """{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- set ns = namespace(index=0) %}
{{- bos_token }}
{%- for message in loop_messages %}
    {%- if not (message.role == "tool" or (message.tool_calls is defined and message.tool_calls is not none)) %}
        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}
            {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}
        {%- endif %}
        {%- set ns.index = ns.index + 1 %}
    {%- endif %}
    {%- if message["role"] == "user" %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST] " + system_message + "\\n\\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST] " + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif message["role"] == "assistant" %}
        {{- " " + message["content"]|trim + eos_token }}
    {%- else %}
        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}
    {%- endif %}
{%- endfor %}
"""

STYLE_TOOLS = [{"type": "function", "function": {"name": "lookup", "description": "Look up a word",
                                                  "parameters": {"type": "object", "properties": {"word": {"type": "string"}},
                                                                 "required": ["word"]}}}]
STYLE_CONVERSATIONS = [
    ("plain", {"messages": msgs(("user", "Hi"), ("assistant", "Hello"), ("user", "Bye")), "tools": None,
               "add_generation_prompt": True, "bos_token": "<s>", "eos_token": "</s>"}),
    ("system_no_gen", {"messages": msgs(("system", "  Be exact.  "), ("user", "2+2?"), ("assistant", " 4 ")), "tools": None,
                       "add_generation_prompt": False, "bos_token": "<s>", "eos_token": "</s>"}),
    ("thinking", {"messages": msgs(("user", "Q1"), ("assistant", "<think>\nplan A\n</think>\n\nA1"), ("user", "Q2"),
                                   ("assistant", "<think>\nplan B\n</think>\n\nA2")),
                  "tools": None, "add_generation_prompt": False, "bos_token": "<s>", "eos_token": "</s>",
                  "enable_thinking": False}),
    ("tools", {"messages": [{"role": "system", "content": "Sys."}, {"role": "user", "content": "Define 'jinja'"},
                            {"role": "assistant", "content": "", "tool_calls": [
                                {"type": "function", "function": {"name": "lookup", "arguments": {"word": "jinja"}}}]},
                            {"role": "tool", "content": "a template engine"}],
               "tools": STYLE_TOOLS, "add_generation_prompt": True, "bos_token": "<s>", "eos_token": "</s>"}),
    ("bad_alternation", {"messages": msgs(("user", "a"), ("user", "b")), "tools": None,
                         "add_generation_prompt": True, "bos_token": "<s>", "eos_token": "</s>"}),
]
# Stored once in the JSON ("shared_templates"); a case's "template" "@name" refers to one.
SHARED_TEMPLATES = {"qwen3_style": QWEN3_STYLE, "llama3_style": LLAMA3_STYLE, "mistral_style": MISTRAL_STYLE}
for _style in SHARED_TEMPLATES:
    for _case, _ctx in STYLE_CONVERSATIONS:
        GENERAL.append((f"{_style}_{_case}", "@" + _style, _ctx))


def make_general_cases():
    cases = []
    names = set()
    for name, template, context in GENERAL:
        assert name not in names, name
        names.add(name)
        case = {"name": name, "template": template, "context": context}
        source = SHARED_TEMPLATES[template[1:]] if template.startswith("@") else template
        case.update(render_case(source, context))
        cases.append(case)
    n_err = sum("error" in c for c in cases)
    out = {"jinja2_version": jinja2.__version__, "shared_templates": SHARED_TEMPLATES, "cases": cases}
    write_json(os.path.join(OUT, "jinja_cases.json"), out)
    print(f"  {len(cases)} cases, {n_err} expected errors")


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, file in MODELS.items():
        make_model_reference(name, file)
    make_general_cases()


if __name__ == "__main__":
    main()
