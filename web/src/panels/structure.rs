//! The Structure tab: the module tree as nested `<details>` (runs of identical layers folded),
//! parameter counts, shapes and stored dtypes, from the headers alone.

use std::collections::HashMap;
use std::rc::Rc;

use hubscope_core::structure::{ModuleNode, model_tree};
use leptos::prelude::*;

use super::{group, human};
use crate::i18n::t;
use crate::state::{Tab, ctx};

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
                let tree = model_tree(&v.config);
                let total = tree.num_params() as u64;
                let dtypes: HashMap<String, String> = v.headers.iter().flat_map(|h| h.tensors.iter().map(|(k, t)| (k.clone(), t.dtype.to_string()))).collect();
                view! {
                    <p>{move || t(lang.get(), "total_params")}": "<b id="total-params">{group(total)}</b></p>
                    <p>{move || t(lang.get(), "bytes")}": "{human(v.stored_bytes as f64)}" · "{move || t(lang.get(), "fetched")}": "<span id="fetched">{human(v.fetched_bytes as f64)}</span></p>
                    <div class="tree">{tree_view(tree, String::new(), Rc::new(dtypes))}</div>
                }
            })}
        </section>
    }
}
