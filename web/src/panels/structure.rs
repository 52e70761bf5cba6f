//! The Structure tab: the module tree as nested `<details>` (runs of identical layers folded),
//! parameter counts, shapes and stored dtypes, from the headers alone — transformers' tree for
//! a family hubscope runs, the tree of tensor names for any other checkpoint or a GGUF file.

use std::collections::HashMap;
use std::rc::Rc;

use hubscope_core::checkpoint::{
    NameNode, Summary, TensorRole, shown_children, summarize, summarize_gguf,
};
use hubscope_core::structure::{ModuleNode, model_tree};
use leptos::prelude::*;

use super::{group, human};
use crate::i18n::{Lang, t};
use crate::repo::Checkpoint;
use crate::state::{Tab, ctx};

/// One module of a tree built from tensor names: its tensors, then its children (runs of
/// identical numbered ones folded by the core, `count` of them).
fn name_view(node: &NameNode, label: &str, count: usize) -> AnyView {
    let note = if count > 1 {
        format!(
            "{} params each, {} in all",
            group(node.parameters),
            group(node.parameters * count as u64)
        )
    } else {
        format!("{} params", group(node.parameters))
    };
    let tensors: Vec<String> = node
        .tensors
        .iter()
        .map(|t| {
            let role = match t.role {
                TensorRole::Parameter => "",
                TensorRole::Buffer => " (buffer)",
                TensorRole::QuantMeta => " (quantization metadata)",
            };
            format!("{} {:?} {}{role}", t.name, t.shape, t.dtype)
        })
        .collect();
    let kids: Vec<AnyView> = shown_children(node)
        .into_iter()
        .map(|c| name_view(c.node, &c.label, c.count))
        .collect();
    if kids.is_empty() {
        return view! {
            <div class="leaf"><code>{label.to_string()}</code>" "<span class="note">{note}</span>" "<span class="shapes">{tensors.join(" · ")}</span></div>
        }
        .into_any();
    }
    let open = label.is_empty() || !label.starts_with('(');
    view! {
        <details open=open>
            <summary><code>{label.to_string()}</code>" "<span class="note">{note}</span></summary>
            <div class="kids">
                {tensors.into_iter().map(|t| view! { <div class="leaf"><span class="shapes">{t}</span></div> }).collect_view()}
                {kids}
            </div>
        </details>
    }
    .into_any()
}

/// A checkpoint shown from its tensor names: what it is, its totals, the tree.
fn names_view(lang: Lang, title: String, s: Summary, stored_bytes: u64, fetched: u64) -> AnyView {
    let stored: Vec<String> = s
        .by_dtype
        .iter()
        .map(|(d, t)| {
            format!(
                "{d}: {} tensors, {} values, {}",
                t.tensors,
                group(t.values),
                human(t.bytes as f64)
            )
        })
        .collect();
    view! {
        <p id="structure-note">{title}</p>
        <p>{t(lang, "total_params")}": "<b id="total-params">{group(s.parameters)}</b>
            {(s.buffers > 0).then(|| format!(" (+{} in buffers)", group(s.buffers)))}
            {(s.quant_meta > 0).then(|| format!(" (+{} quantization scales, zero points, indexes)", group(s.quant_meta)))}</p>
        <p>{t(lang, "bytes")}": "{human(stored_bytes as f64)}" · "{t(lang, "fetched")}": "<span id="fetched">{human(fetched as f64)}</span></p>
        <ul id="stored-dtypes">{stored.into_iter().map(|l| view! { <li>{l}</li> }).collect_view()}</ul>
        <div class="tree">{name_view(&s.tree, "", 1)}</div>
    }
    .into_any()
}

/// One module of the tree as nested <details>, runs of identical list items folded.
fn tree_view(node: ModuleNode, label: String, dtypes: Rc<HashMap<String, String>>) -> AnyView {
    let n = node.num_params();
    let params: Vec<String> = node
        .params
        .iter()
        .map(|p| match &p.tied_to {
            Some(to) => format!(
                "{} {:?} → {to}",
                p.path.rsplit('.').next().unwrap_or(""),
                p.shape
            ),
            None => format!(
                "{} {:?} {}",
                p.path.rsplit('.').next().unwrap_or(""),
                p.shape,
                dtypes.get(&p.path).cloned().unwrap_or_default()
            ),
        })
        .collect();
    let head = if node.extra_repr.is_empty() {
        format!("{label}{}", node.class)
    } else {
        format!("{label}{}({})", node.class, node.extra_repr)
    };
    let note = if n > 0 {
        format!("{} params", group(n as u64))
    } else {
        String::new()
    };
    if node.children.is_empty() {
        return view! {
            <div class="leaf"><code>{head}</code>" "<span class="note">{note}</span>" "<span class="shapes">{params.join(" · ")}</span></div>
        }
        .into_any();
    }
    let kids: Vec<AnyView> = node
        .shown_children()
        .into_iter()
        .map(|c| tree_view(c.node.clone(), c.label, dtypes.clone()))
        .collect();
    let open = node.path.matches('.').count() < 2;
    view! {
        <details open=open>
            <summary><code>{head}</code>" "<span class="note">{note}</span></summary>
            <div class="kids">{kids}</div>
        </details>
    }
    .into_any()
}

#[component]
pub fn StructurePanel() -> impl IntoView {
    let c = ctx();
    let lang = c.lang;
    view! {
        <section id="panel-structure" class:hidden=move || c.tab.get() != Tab::Structure>
            {move || c.view.get().map(|v| {
                let l = lang.get();
                let (config, headers) = match &v.checkpoint {
                    Checkpoint::Runs { config, headers, .. } => (config, headers),
                    Checkpoint::Names { model_type, quantized, headers, .. } => {
                        let title = match quantized {
                            Some(q) => format!("{model_type}, {} ({q})", t(l, "st.quantized")),
                            None => format!("{model_type}: {}", t(l, "st.unknown")),
                        };
                        return names_view(l, title, summarize(headers), v.stored_bytes, v.fetched_bytes);
                    }
                    Checkpoint::Gguf { file, header, .. } => {
                        let title = format!("{file}: {} · {}", header.architecture().unwrap_or("?"), t(l, "st.gguf"));
                        return names_view(l, title, summarize_gguf(header), v.stored_bytes, v.fetched_bytes);
                    }
                };
                let tree = model_tree(config);
                let total = tree.num_params() as u64;
                let dtypes: HashMap<String, String> = headers.iter().flat_map(|h| h.tensors.iter().map(|(k, t)| (k.clone(), t.dtype.to_string()))).collect();
                view! {
                    <p>{move || t(lang.get(), "total_params")}": "<b id="total-params">{group(total)}</b></p>
                    <p>{move || t(lang.get(), "bytes")}": "{human(v.stored_bytes as f64)}" · "{move || t(lang.get(), "fetched")}": "<span id="fetched">{human(v.fetched_bytes as f64)}</span></p>
                    <div class="tree">{tree_view(tree, String::new(), Rc::new(dtypes))}</div>
                }.into_any()
            })}
        </section>
    }
}
