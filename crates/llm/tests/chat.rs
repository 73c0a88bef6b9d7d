//! Chat templates against what transformers renders for the same messages.
//!
//! The expected strings were written from the template semantics and checked against
//! Python jinja2 configured as transformers configures it (`ImmutableSandboxedEnvironment
//! (trim_blocks=True, lstrip_blocks=True)` + loopcontrols + `raise_exception`, and
//! `json.dumps` for `tojson`); where a public test suite has the same case
//! (huggingface swift-jinja for Qwen2.5, transformers.js for Llama 2) the strings agree
//! with it too. llama.cpp's Jinja path renders the same templates with the same
//! settings.

use vtpu_llm::chat::{apply_chat_template, apply_chat_template_named, ChatError, ChatMessage};

/// `tokenizer.chat_template` of SmolLM2-135M-Instruct.Q4_1.gguf, verbatim (read with
/// gguf-py's GGUFReader).
const SMOLLM2_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// `chat_template` of Qwen/Qwen2.5-*-Instruct `tokenizer_config.json`, verbatim
/// (JSON-decoded: the `\n` inside Jinja string literals are Jinja escapes).
const QWEN25_TEMPLATE: &str = r#"{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"#;

/// meta-llama/Llama-2-*-chat-hf `chat_template`, verbatim: system prompt folded into the
/// first `[INST]`, `.strip()`, `raise_exception`, BOS/EOS around every exchange.
const LLAMA2_TEMPLATE: &str = r#"{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"#;

/// HuggingFaceH4/zephyr-7b-beta's template: a block tag on every line, so the output is
/// right only with trim_blocks (and the indentation-free layout with lstrip_blocks).
const ZEPHYR_TEMPLATE: &str = "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";

const PIRATE: &str = "You are a friendly chatbot who always responds in the style of a pirate";

fn user_only() -> Vec<ChatMessage> {
    vec![ChatMessage::new("user", "Hello, how are you?")]
}

/// The conversation the transformers docs and test suites use.
fn conversation() -> Vec<ChatMessage> {
    vec![
        ChatMessage::new("system", PIRATE),
        ChatMessage::new("user", "Hello, how are you?"),
        ChatMessage::new("assistant", "I'm doing great. How can I help you today?"),
        ChatMessage::new("user", "I'd like to show off how chat templating works!"),
    ]
}

fn render(template: &str, messages: &[ChatMessage], gen: bool, bos: &str, eos: &str) -> String {
    match apply_chat_template(template, messages, gen, bos, eos) {
        Ok(s) => s,
        Err(e) => panic!("render failed: {e}"),
    }
}

#[test]
fn smollm2_adds_its_default_system_prompt() {
    let got = render(
        SMOLLM2_TEMPLATE,
        &user_only(),
        true,
        "<|im_start|>",
        "<|im_end|>",
    );
    let want = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
                <|im_start|>user\nHello, how are you?<|im_end|>\n\
                <|im_start|>assistant\n";
    assert_eq!(got, want);
}

#[test]
fn smollm2_keeps_a_given_system_prompt_and_honours_no_generation_prompt() {
    let got = render(
        SMOLLM2_TEMPLATE,
        &conversation(),
        false,
        "<|im_start|>",
        "<|im_end|>",
    );
    let want = format!(
        "<|im_start|>system\n{PIRATE}<|im_end|>\n\
         <|im_start|>user\nHello, how are you?<|im_end|>\n\
         <|im_start|>assistant\nI'm doing great. How can I help you today?<|im_end|>\n\
         <|im_start|>user\nI'd like to show off how chat templating works!<|im_end|>\n"
    );
    assert_eq!(got, want);
}

#[test]
fn qwen25_adds_its_default_system_prompt() {
    // Qwen2.5 has no BOS token (bos_token is null in tokenizer_config.json).
    let got = render(QWEN25_TEMPLATE, &user_only(), true, "", "<|im_end|>");
    let want = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n\
                <|im_start|>user\nHello, how are you?<|im_end|>\n\
                <|im_start|>assistant\n";
    assert_eq!(got, want);
}

#[test]
fn qwen25_uses_a_given_system_prompt() {
    let got = render(QWEN25_TEMPLATE, &conversation(), true, "", "<|im_end|>");
    let want = format!(
        "<|im_start|>system\n{PIRATE}<|im_end|>\n\
         <|im_start|>user\nHello, how are you?<|im_end|>\n\
         <|im_start|>assistant\nI'm doing great. How can I help you today?<|im_end|>\n\
         <|im_start|>user\nI'd like to show off how chat templating works!<|im_end|>\n\
         <|im_start|>assistant\n"
    );
    assert_eq!(got, want);
}

#[test]
fn qwen25_multi_turn_without_generation_prompt() {
    // The swift-jinja "Qwen/Qwen2.5-0.5B-Instruct" case: no system message, no prompt.
    let got = render(
        QWEN25_TEMPLATE,
        &conversation()[1..],
        false,
        "",
        "<|im_end|>",
    );
    let want = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n\
                <|im_start|>user\nHello, how are you?<|im_end|>\n\
                <|im_start|>assistant\nI'm doing great. How can I help you today?<|im_end|>\n\
                <|im_start|>user\nI'd like to show off how chat templating works!<|im_end|>\n";
    assert_eq!(got, want);
}

#[test]
fn llama2_folds_the_system_prompt_into_the_first_instruction() {
    // The transformers.js "llama" case.
    let got = render(LLAMA2_TEMPLATE, &conversation(), false, "<s>", "</s>");
    let want = format!(
        "<s>[INST] <<SYS>>\n{PIRATE}\n<</SYS>>\n\nHello, how are you? [/INST] \
         I'm doing great. How can I help you today? </s>\
         <s>[INST] I'd like to show off how chat templating works! [/INST]"
    );
    assert_eq!(got, want);
}

#[test]
fn llama2_without_system_prompt_and_with_python_strip() {
    let got = render(LLAMA2_TEMPLATE, &conversation()[1..], true, "<s>", "</s>");
    let want =
        "<s>[INST] Hello, how are you? [/INST] I'm doing great. How can I help you today? </s>\
                <s>[INST] I'd like to show off how chat templating works! [/INST]";
    assert_eq!(got, want);
    // `.strip()` (pycompat) removes the spaces and the newline around the content.
    let padded = [ChatMessage::new("user", "  spaced out \n")];
    assert_eq!(
        render(LLAMA2_TEMPLATE, &padded, false, "<s>", "</s>"),
        "<s>[INST] spaced out [/INST]"
    );
}

#[test]
fn raise_exception_names_the_template_and_the_message() {
    let two_users = [
        ChatMessage::new("user", "one"),
        ChatMessage::new("user", "two"),
    ];
    let err = apply_chat_template(LLAMA2_TEMPLATE, &two_users, false, "<s>", "</s>")
        .expect_err("roles do not alternate");
    match &err {
        ChatError::Raised {
            template, message, ..
        } => {
            assert_eq!(
                message,
                "Conversation roles must alternate user/assistant/user/assistant/..."
            );
            assert!(
                template.contains("{% if messages[0]['role'] == 'system' %}"),
                "{template}"
            );
        }
        other => panic!("expected Raised, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("Conversation roles must alternate"), "{text}");
    assert!(
        text.contains("bytes)"),
        "the excerpt says how long the template is: {text}"
    );

    let named = apply_chat_template_named(
        "Llama-2-7b-chat.gguf tokenizer.chat_template",
        LLAMA2_TEMPLATE,
        &two_users,
        false,
        "<s>",
        "</s>",
    )
    .expect_err("roles do not alternate");
    let text = named.to_string();
    assert!(
        text.starts_with("chat template Llama-2-7b-chat.gguf tokenizer.chat_template rejected"),
        "{text}"
    );
}

#[test]
fn syntax_error_names_the_template_and_the_line() {
    let broken = "{% for m in messages %}\n{{ m.content }}\n";
    let err = apply_chat_template(broken, &user_only(), false, "", "").expect_err("no endfor");
    match &err {
        ChatError::Syntax {
            template, message, ..
        } => {
            assert!(template.contains("{% for m in messages %}"), "{template}");
            assert!(message.contains("unexpected end of input"), "{message}");
        }
        other => panic!("expected Syntax, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("syntax error at line"), "{text}");
    eprintln!("{text}");
}

#[test]
fn trim_blocks_and_lstrip_blocks_match_transformers() {
    let got = render(ZEPHYR_TEMPLATE, &conversation()[..2], true, "<s>", "</s>");
    let want =
        format!("<|system|>\n{PIRATE}</s>\n<|user|>\nHello, how are you?</s>\n<|assistant|>\n");
    assert_eq!(got, want);
    // lstrip_blocks: indentation before a block tag is dropped, before text kept.
    let indented = "{% for m in messages %}\n    {% if true %}\n  [{{ m.role }}]\n    {% endif %}\n{% endfor %}";
    assert_eq!(render(indented, &user_only(), false, "", ""), "  [user]\n");
}

#[test]
fn python_methods_loop_controls_and_tojson() {
    let template = "{% for m in messages %}{% if m.content.startswith('skip') %}{% continue %}{% endif %}\
                    {% if m.role == 'stop' %}{% break %}{% endif %}\
                    {{ m.role.upper() }}={{ m.content.strip().split(' ')|join('_') }}|{{ m|tojson }};{% endfor %}";
    let messages = [
        ChatMessage::new("user", "  a b  c "),
        ChatMessage::new("user", "skip me"),
        ChatMessage::new("assistant", "x"),
        ChatMessage::new("stop", "y"),
        ChatMessage::new("user", "z"),
    ];
    // transformers' tojson keeps the dict's order (role, content); jinja2's own would
    // sort the keys.
    let want = r#"USER=a_b__c|{"role": "user", "content": "  a b  c "};ASSISTANT=x|{"role": "assistant", "content": "x"};"#;
    assert_eq!(render(template, &messages, false, "", ""), want);
}

#[test]
fn tojson_matches_python_json_dumps() {
    let nasty = "q\"uo\\te\n\t\u{1}\u{e9}\u{1F600}";
    let messages = [ChatMessage::new("user", nasty)];
    let dict = r#"{"b": 1, "a": [true, false, none], "c": {"z": messages[0].content, "y": []}}"#;
    let case = |filter: &str| {
        let template = format!("{{{{ {dict}|{filter} }}}}");
        render(&template, &messages, false, "", "")
    };
    // Expected strings: Python json.dumps of the same dict with the same arguments.
    assert_eq!(
        case("tojson"),
        "{\"b\": 1, \"a\": [true, false, null], \"c\": {\"z\": \"q\\\"uo\\\\te\\n\\t\\u0001\u{e9}\u{1F600}\", \"y\": []}}"
    );
    assert_eq!(
        case("tojson(indent=2)"),
        "{\n  \"b\": 1,\n  \"a\": [\n    true,\n    false,\n    null\n  ],\n  \"c\": {\n    \"z\": \"q\\\"uo\\\\te\\n\\t\\u0001\u{e9}\u{1F600}\",\n    \"y\": []\n  }\n}"
    );
    assert_eq!(
        case("tojson(sort_keys=true, separators=[',', ':'])"),
        "{\"a\":[true,false,null],\"b\":1,\"c\":{\"y\":[],\"z\":\"q\\\"uo\\\\te\\n\\t\\u0001\u{e9}\u{1F600}\"}}"
    );
    assert_eq!(
        case("tojson(ensure_ascii=true)"),
        "{\"b\": 1, \"a\": [true, false, null], \"c\": {\"z\": \"q\\\"uo\\\\te\\n\\t\\u0001\\u00e9\\ud83d\\ude00\", \"y\": []}}"
    );
    // Floats print as Python's repr does.
    let floats = "{{ [1.5, 1.0, 100.0, 1e16, 1e-5, 0.0001, -0.0, 123.45, 123456789012345678.0, 1e300, 12345678901234.5, -2.5e-7]|tojson }}";
    assert_eq!(
        render(floats, &[], false, "", ""),
        "[1.5, 1.0, 100.0, 1e+16, 1e-05, 0.0001, -0.0, 123.45, 1.2345678901234568e+17, 1e+300, 12345678901234.5, -2.5e-07]"
    );
}

#[test]
fn messages_have_only_role_and_content() {
    let template = "{% for m in messages %}{% if m.tool_calls is defined %}has{% else %}no{% endif %} tool_calls/{{ m.get('content') }}/{{ m|length }}{% endfor %}";
    assert_eq!(
        render(template, &user_only(), false, "", ""),
        "no tool_calls/Hello, how are you?/2"
    );
}

#[test]
fn bos_and_eos_reach_the_template() {
    let template =
        "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}";
    assert_eq!(
        render(template, &user_only(), false, "<B>", "<E>"),
        "<B>Hello, how are you?<E>"
    );
}

#[test]
fn runaway_template_runs_out_of_fuel_instead_of_hanging() {
    let template =
        "{% for i in range(10000) %}{% for j in range(10000) %}x{% endfor %}{% endfor %}";
    let err = apply_chat_template(template, &[], false, "", "").expect_err("fuel must run out");
    match &err {
        ChatError::Render { message, .. } => assert!(message.contains("fuel"), "{message}"),
        other => panic!("expected Render, got {other:?}"),
    }
}

#[test]
fn render_errors_are_typed() {
    // Attribute of an undefined value: an error in jinja2 too.
    let template = "{{ messages[0].nope.deeper }}";
    let err = apply_chat_template(template, &user_only(), false, "", "").expect_err("undefined");
    assert!(matches!(err, ChatError::Render { .. }), "{err:?}");
    // Nesting that would overflow a naive recursive writer.
    let deep = "{% set ns = namespace(x=[]) %}{% for i in range(1000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x|tojson }}";
    let err = apply_chat_template(deep, &[], false, "", "").expect_err("too deep");
    assert!(err.to_string().contains("nesting deeper"), "{err}");
}
