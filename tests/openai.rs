//! `hubscope serve --chat` against the official `openai` Python client (tests/data/
//! openai_client.py, the package from PyPI in the test venv), checked against transformers'
//! references (../shared/fixtures/*/reference.json and reference.safetensors, transformers
//! 4.57.6, eager, f32): greedy text whole and streamed, logprobs, stop strings, usage, the
//! error objects, 32 concurrent streams, a cancelled stream and a full queue.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use hubscope_core::text::Tokenizer;
use serde_json::{Value, json};

const KEY: &str = "sk-test-0123456789";

/// Run `plan` (steps of concurrent calls) with the openai client; results per step and call.
fn client(url: &str, plan: &Value) -> Vec<Vec<Value>> {
    let out = common::run_script(
        "openai_client.py",
        &[&format!("{url}/v1"), KEY],
        plan.to_string().as_bytes(),
    );
    serde_json::from_slice(&out).expect("client output")
}

/// One fixture's reference prompts and its first-step log-probabilities.
struct Reference {
    name: String,
    prompts: Vec<Value>,
    /// log_softmax of the last-position logits of each prompt (transformers').
    logprobs: Vec<Vec<f64>>,
    tokenizer: Tokenizer,
}

fn reference(dir: &Path) -> Reference {
    let read = |n: &str| std::fs::read(dir.join(n)).unwrap();
    let r: Value = serde_json::from_slice(&read("reference.json")).unwrap();
    let raw = read("reference.safetensors");
    let st = safetensors::SafeTensors::deserialize(&raw).unwrap();
    let prompts = r["prompts"].as_array().unwrap().clone();
    let logprobs = (0..prompts.len())
        .map(|i| {
            let t = st.tensor(&format!("prompt{i}.last_logits")).unwrap();
            let l: Vec<f64> = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect();
            let max = l.iter().cloned().fold(f64::MIN, f64::max);
            let lse = l.iter().map(|x| (x - max).exp()).sum::<f64>().ln() + max;
            l.iter().map(|x| x - lse).collect()
        })
        .collect();
    Reference {
        name: dir.file_name().unwrap().to_string_lossy().into(),
        prompts,
        logprobs,
        tokenizer: Tokenizer::from_bytes(
            &read("tokenizer.json"),
            Some(&read("tokenizer_config.json")),
        )
        .unwrap(),
    }
}

/// The call that asks for prompt `p` of fixture `r` greedily: chat for chat prompts,
/// completions for raw ones.
fn call(r: &Reference, p: &Value, extra: Value) -> Value {
    let mut args = json!({"model": r.name, "max_tokens": 16, "temperature": 0});
    if p["kind"] == "chat_template" {
        args["messages"] = p["messages"].clone();
    } else {
        args["prompt"] = p["text"].clone();
    }
    for (k, v) in extra.as_object().unwrap() {
        if !v.is_null() {
            args[k] = v.clone();
        }
    }
    let kind = if p["kind"] == "chat_template" {
        "chat"
    } else {
        "completion"
    };
    json!({"kind": kind, "args": args})
}

/// The text of a whole response (chat message or completion text).
fn text_of(v: &Value) -> String {
    let c = &v["response"]["choices"][0];
    c["message"]["content"]
        .as_str()
        .or(c["text"].as_str())
        .unwrap_or_else(|| panic!("no text in {v}"))
        .to_string()
}

/// A stream's chunks joined: text, finish_reason, usage (from the usage chunk).
fn joined(v: &Value) -> (String, Option<String>, Option<Value>) {
    let chunks = v["chunks"]
        .as_array()
        .unwrap_or_else(|| panic!("no chunks: {v}"));
    let (mut text, mut finish, mut usage) = (String::new(), None, None);
    for c in chunks {
        for ch in c["choices"].as_array().unwrap() {
            let piece = ch["delta"]["content"].as_str().or(ch["text"].as_str());
            text.push_str(piece.unwrap_or(""));
            if let Some(f) = ch["finish_reason"].as_str() {
                finish = Some(f.to_string());
            }
        }
        if !c["usage"].is_null() {
            usage = Some(c["usage"].clone());
        }
    }
    (text, finish, usage)
}

fn error_of(v: &Value) -> (u64, Value) {
    let e = &v["error"];
    let body = e["body"].get("error").unwrap_or(&e["body"]).clone();
    (e["status"].as_u64().unwrap_or(0), body)
}

fn fixture(name: &str) -> PathBuf {
    common::fixtures().join(name)
}

fn metrics(url: &str) -> HashMap<String, f64> {
    let text = ureq::get(&format!("{url}/metrics"))
        .set("Authorization", &format!("Bearer {KEY}"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect()
}

fn chat_server(extra: &[&str]) -> common::Server {
    let models = format!(
        "tiny-qwen2={},tiny-llama={}",
        fixture("tiny-qwen2").display(),
        fixture("tiny-llama").display()
    );
    let mut args = vec!["--chat", &models, "--api-key", KEY];
    args.extend_from_slice(extra);
    common::Server::start(&args)
}

/// Greedy text whole and streamed, logprobs, usage and stop strings through the openai client
/// equal transformers' references, on two fixtures served side by side.
#[test]
fn the_openai_client_gets_transformers_greedy_text() {
    let server = chat_server(&[]);
    let refs = [
        reference(&fixture("tiny-qwen2")),
        reference(&fixture("tiny-llama")),
    ];
    let mut plan = vec![json!({"kind": "models", "args": {}})];
    for r in &refs {
        for p in &r.prompts {
            plan.push(call(r, p, json!({"logprobs": if p["kind"] == "chat_template" { json!(true) } else { json!(5) }, "top_logprobs": if p["kind"] == "chat_template" { json!(5) } else { Value::Null }})));
            plan.push(call(
                r,
                p,
                json!({"stream": true, "stream_options": {"include_usage": true}}),
            ));
        }
    }
    // Stop strings: four characters from the middle of the chat prompt's reference text.
    let chat = &refs[0].prompts[2];
    let want: Vec<char> = chat["greedy"]["text"].as_str().unwrap().chars().collect();
    let stop: String = want[want.len() / 2..want.len() / 2 + 4].iter().collect();
    let full: String = want.iter().collect();
    let cut = full[..full.find(&stop).unwrap()].to_string();
    plan.push(call(
        &refs[0],
        chat,
        json!({"stop": [stop.clone(), "never"]}),
    ));
    plan.push(call(&refs[0], chat, json!({"stop": stop, "stream": true})));
    let out = client(&server.url, &json!([plan]));
    let out = &out[0];

    assert_eq!(out[0]["models"], json!(["tiny-qwen2", "tiny-llama"]));
    let mut i = 1;
    for r in &refs {
        for (n, p) in r.prompts.iter().enumerate() {
            let what = format!("{}/{}", r.name, p["name"]);
            let want = p["greedy"]["text"].as_str().unwrap();
            let prompt_tokens = p["num_tokens"].as_u64().unwrap();
            let whole = &out[i];
            assert_eq!(text_of(whole), want, "{what}: greedy text");
            let resp = &whole["response"];
            assert_eq!(resp["choices"][0]["finish_reason"], "length", "{what}");
            assert_eq!(
                resp["usage"],
                json!({"prompt_tokens": prompt_tokens, "completion_tokens": 16,
                       "total_tokens": prompt_tokens + 16, "completion_tokens_details": null,
                       "prompt_tokens_details": null}),
                "{what}: usage"
            );
            // The first step's top-5 log-probabilities against transformers' logits.
            let lp = &r.logprobs[n];
            let mut ids: Vec<usize> = (0..lp.len()).collect();
            ids.sort_by(|a, b| lp[*b].total_cmp(&lp[*a]));
            let got: Vec<(String, f64)> = if p["kind"] == "chat_template" {
                let c = &resp["choices"][0]["logprobs"]["content"];
                assert_eq!(
                    c.as_array().unwrap().len(),
                    16,
                    "{what}: one entry per token"
                );
                c[0]["top_logprobs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| {
                        (
                            t["token"].as_str().unwrap().into(),
                            t["logprob"].as_f64().unwrap(),
                        )
                    })
                    .collect()
            } else {
                let l = &resp["choices"][0]["logprobs"];
                assert_eq!(l["tokens"].as_array().unwrap().len(), 16, "{what}");
                let mut top: Vec<(String, f64)> = l["top_logprobs"][0]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
                    .collect();
                top.sort_by(|a, b| b.1.total_cmp(&a.1));
                top
            };
            assert_eq!(got.len(), 5, "{what}: top_logprobs");
            for (k, (token, logprob)) in got.iter().enumerate() {
                let id = ids[k] as u32;
                assert_eq!(
                    token,
                    &r.tokenizer.decode(&[id], false).unwrap(),
                    "{what}: top {k}"
                );
                let d = (logprob - lp[ids[k]]).abs();
                assert!(d <= 1e-4, "{what}: top {k} logprob off by {d}");
            }
            // Streamed: the same text, then the finish, then the usage chunk and [DONE].
            let (text, finish, usage) = joined(&out[i + 1]);
            assert_eq!(text, want, "{what}: streamed text");
            assert_eq!(finish.as_deref(), Some("length"), "{what}");
            assert_eq!(
                usage.unwrap()["completion_tokens"],
                16,
                "{what}: streamed usage"
            );
            let chunks = out[i + 1]["chunks"].as_array().unwrap();
            assert_eq!(chunks.last().unwrap()["choices"], json!([]), "{what}");
            if p["kind"] == "chat_template" {
                assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
            }
            i += 2;
        }
    }
    assert_eq!(
        text_of(&out[i]),
        cut,
        "stop {stop:?}: the text ends before it"
    );
    assert_eq!(out[i]["response"]["choices"][0]["finish_reason"], "stop");
    let completion = out[i]["response"]["usage"]["completion_tokens"]
        .as_u64()
        .unwrap();
    assert!(completion < 16, "generation stopped at the stop string");
    let (text, finish, _) = joined(&out[i + 1]);
    assert_eq!(text, cut, "streamed, stop {stop:?}");
    assert_eq!(finish.as_deref(), Some("stop"));
}

/// Errors as OpenAI's objects with the right status, through the client and raw HTTP.
#[test]
fn errors_are_openai_error_objects() {
    let server = chat_server(&[]);
    let r = reference(&fixture("tiny-qwen2"));
    let chat = &r.prompts[2];
    let long = json!([{"role": "user", "content": "word ".repeat(600)}]);
    let plan = json!([[
        call(&r, chat, json!({"model": "no-such-model"})),
        call(&r, chat, json!({"max_tokens": -1})),
        call(&r, chat, json!({"messages": long})),
        call(&r, chat, json!({"max_tokens": 500})),
        call(&r, chat, json!({"n": 2})),
        {"kind": "models", "args": {}, "key": "sk-wrong"},
    ]]);
    let out = client(&server.url, &plan);
    let out = &out[0];
    let expect = [
        (404, "model", Some("model_not_found")),
        (400, "max_tokens", None),
        (400, "messages", Some("context_length_exceeded")),
        (400, "messages", Some("context_length_exceeded")),
        (400, "n", None),
        (401, "", Some("invalid_api_key")),
    ];
    for (k, (status, param, code)) in expect.iter().enumerate() {
        let (s, body) = error_of(&out[k]);
        assert_eq!(s, *status, "call {k}: {}", out[k]);
        if !param.is_empty() {
            assert_eq!(body["param"], *param, "call {k}: {body}");
        }
        if let Some(c) = code {
            assert_eq!(body["code"], *c, "call {k}: {body}");
        }
        assert!(body["message"].as_str().unwrap().len() > 10, "{body}");
    }
    // Malformed JSON and a missing key, as raw HTTP.
    let post = |body: &str, key: Option<&str>| {
        let mut req = ureq::post(&format!("{}/v1/chat/completions", server.url))
            .set("Content-Type", "application/json");
        if let Some(k) = key {
            req = req.set("Authorization", &format!("Bearer {k}"));
        }
        match req.send_string(body) {
            Err(ureq::Error::Status(s, r)) => (s, r.into_json::<Value>().unwrap()),
            other => panic!("expected an error status: {:?}", other.map(|r| r.status())),
        }
    };
    let (s, v) = post("{\"model\": ", Some(KEY));
    assert_eq!(s, 400);
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );
    let (s, v) = post("{}", None);
    assert_eq!(s, 401);
    assert!(!v.to_string().contains(KEY), "the key is never echoed");
}

/// 32 concurrent streams (eight prompts of two models, four clients each) each get their own
/// reference text: no cross-talk between the rows of a batch, no request lost or duplicated.
#[test]
fn concurrent_streams_each_get_their_own_text() {
    let server = chat_server(&[]);
    let refs = [
        reference(&fixture("tiny-qwen2")),
        reference(&fixture("tiny-llama")),
    ];
    let mut calls = vec![];
    let mut wants = vec![];
    for _ in 0..4 {
        for r in &refs {
            for p in &r.prompts {
                calls.push(call(r, p, json!({"stream": true})));
                wants.push(p["greedy"]["text"].as_str().unwrap().to_string());
            }
        }
    }
    assert_eq!(calls.len(), 32);
    let out = client(&server.url, &json!([calls]));
    let ids: std::collections::HashSet<String> = out[0]
        .iter()
        .map(|o| o["chunks"][0]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 32, "every request its own response");
    for (k, (o, want)) in out[0].iter().zip(&wants).enumerate() {
        let (text, finish, _) = joined(o);
        assert_eq!(&text, want, "client {k}");
        assert_eq!(finish.as_deref(), Some("length"), "client {k}");
    }
    let m = metrics(&server.url);
    assert_eq!(m["hubscope_generation_tokens_total"], 32.0 * 16.0);
    assert!(
        m["hubscope_largest_batch"] > 1.0,
        "concurrent requests are decoded together, not one after another"
    );
    eprintln!(
        "largest batch {}, mean {:.1} rows per decode step",
        m["hubscope_largest_batch"],
        m["hubscope_decode_rows_total"] / m["hubscope_decode_steps_total"]
    );
}

/// One place in the batch and one in the queue: a stream the client closes leaves the batch
/// at once (it does not run to its 490 tokens) and the next request is served; while a
/// request runs and another waits, a third gets 429 with Retry-After.
#[test]
fn a_cancelled_stream_frees_its_place_and_a_full_queue_says_429() {
    let server = chat_server(&["--max-batch", "1", "--max-queue", "1"]);
    let r = reference(&fixture("tiny-qwen2"));
    let english = &r.prompts[0];
    let long = json!({"max_tokens": 490});
    let mut cancelled = call(&r, english, json!({"max_tokens": 490, "stream": true}));
    cancelled["cancel_after"] = json!(3);
    let out = client(
        &server.url,
        &json!([[cancelled], [call(&r, english, json!({}))]]),
    );
    assert_eq!(out[0][0]["chunks"].as_array().unwrap().len(), 3);
    assert_eq!(
        text_of(&out[1][0]),
        english["greedy"]["text"].as_str().unwrap()
    );
    let m = metrics(&server.url);
    assert_eq!(m["hubscope_requests_cancelled_total"], 1.0);
    let generated = m["hubscope_generation_tokens_total"] - 16.0;
    eprintln!("the cancelled stream generated {generated} tokens");
    assert!(
        generated < 200.0,
        "the cancelled stream ran on for {generated} tokens"
    );

    let out = client(
        &server.url,
        &json!([[
            call(&r, english, long.clone()),
            call(&r, english, long.clone()),
            call(&r, english, long)
        ]]),
    );
    let busy: Vec<&Value> = out[0].iter().filter(|o| o.get("error").is_some()).collect();
    assert_eq!(busy.len(), 1, "{out:?}");
    let (s, body) = error_of(busy[0]);
    assert_eq!(s, 429);
    assert_eq!(body["code"], "rate_limit_exceeded");
    assert_eq!(busy[0]["error"]["retry_after"], "1");
}

/// LoRA adapters chosen per request by model name (`base:adapter`), over one copy of the base:
/// the probe prompt of ../shared/fixtures/lora-tiny-qwen2 (made with transformers + peft) asked
/// at once of `tiny-qwen2:init`, `tiny-qwen2:after` and the base; each adapter's top-5
/// next tokens are PEFT's, with PEFT's logit gaps to the first within 1e-4.
#[test]
fn adapters_are_chosen_per_request() {
    let lora = common::fixtures().join("lora-tiny-qwen2");
    let init = format!("init={}", lora.join("adapter_init").display());
    let after = format!("tiny-qwen2:after={}", lora.join("adapter_after").display());
    let server = chat_server(&["--adapter", &init, "--adapter", &after]);
    let r: Value =
        serde_json::from_slice(&std::fs::read(lora.join("reference.json")).unwrap()).unwrap();
    let probe = &r["probe"];
    let tok = reference(&fixture("tiny-qwen2")).tokenizer;
    let ask = |model: &str| {
        json!({"kind": "completion", "args": {"model": model, "prompt": probe["text"],
               "max_tokens": 1, "temperature": 0, "logprobs": 5}})
    };
    let plan = json!([
        [{"kind": "models", "args": {}}],
        [ask("tiny-qwen2:init"), ask("tiny-qwen2:after"), ask("tiny-qwen2"), ask("tiny-qwen2:nope")]
    ]);
    let out = client(&server.url, &plan);
    assert_eq!(
        out[0][0]["models"],
        json!([
            "tiny-qwen2",
            "tiny-qwen2:init",
            "tiny-qwen2:after",
            "tiny-llama"
        ])
    );
    let top = |o: &Value| -> Vec<(String, f64)> {
        let resp = &o["response"];
        assert_eq!(
            resp["usage"]["prompt_tokens"],
            probe["input_ids"].as_array().unwrap().len(),
            "the probe's own ids"
        );
        let mut t: Vec<(String, f64)> = resp["choices"][0]["logprobs"]["top_logprobs"][0]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
            .collect();
        t.sort_by(|a, b| b.1.total_cmp(&a.1));
        t
    };
    for (k, which) in [(0, "top5_init"), (1, "top5_after")] {
        let got = top(&out[1][k]);
        let want = &probe[which];
        let values: Vec<f64> = want["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for (i, id) in want["ids"].as_array().unwrap().iter().enumerate() {
            let id = id.as_u64().unwrap() as u32;
            assert_eq!(
                got[i].0,
                tok.decode(&[id], false).unwrap(),
                "{which}: top {i}"
            );
            let gap = (got[i].1 - got[0].1) - (values[i] - values[0]);
            assert!(gap.abs() <= 1e-4, "{which}: top {i} gap off by {gap}");
        }
    }
    let base = top(&out[1][2]);
    assert_ne!(base, top(&out[1][0]), "the base runs without the adapter");
    let (status, body) = error_of(&out[1][3]);
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("model_not_found"))
    );
}
