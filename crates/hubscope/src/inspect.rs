//! `hubscope inspect`: the module tree as PyTorch prints it, annotated with parameter counts,
//! shapes and stored dtypes, from config.json and the safetensors headers only.

use std::collections::BTreeMap;

use hubscope_core::ModelConfig;
use hubscope_core::structure::{ModuleNode, model_tree, torch_repr};
use serde_json::{Value, json};

/// Stored dtype per checkpoint tensor name (from the headers).
pub type Dtypes = BTreeMap<String, String>;

pub use hubscope_core::units::human_bytes;

pub fn group(n: usize) -> String {
    hubscope_core::units::group_digits(n as u64)
}

fn param_note(node: &ModuleNode, dtypes: &Dtypes) -> String {
    let n = node.num_params();
    let mut parts = vec![format!("{} params", group(n))];
    for p in &node.params {
        let short = p.path.rsplit('.').next().unwrap_or(&p.path);
        match &p.tied_to {
            Some(t) => parts.push(format!("{short} {:?} tied to {t}", p.shape)),
            None => parts.push(format!(
                "{short} {:?} {}",
                p.shape,
                dtypes.get(&p.path).map_or("?", String::as_str)
            )),
        }
    }
    parts.join(" · ")
}

/// Lines of the tree (same layout as `print(model)`) with an annotation each; `depth`
/// limits how deep children are shown.
fn annotated(
    node: &ModuleNode,
    dtypes: &Dtypes,
    depth: usize,
    max_depth: usize,
) -> Vec<(String, String)> {
    let note = if node.num_params() > 0 || !node.params.is_empty() {
        param_note(node, dtypes)
    } else {
        String::new()
    };
    let show_children = depth < max_depth && !node.children.is_empty();
    if !show_children {
        let head = torch_repr(&ModuleNode {
            children: vec![],
            ..node.clone()
        });
        let head = if node.children.is_empty() {
            head
        } else {
            format!("{}(...)", node.class)
        };
        return vec![(head, note)];
    }
    let mut out = vec![(format!("{}(", node.class), note)];
    if !node.extra_repr.is_empty() && !node.is_list {
        out.push((format!("  {}", node.extra_repr), String::new()));
    }
    for c in node.shown_children() {
        let mut sub = annotated(c.node, dtypes, depth + 1, max_depth);
        if c.count > 1 {
            let each = c.node.num_params();
            sub[0].1 = format!(
                "{} params each, {} in all",
                group(each),
                group(each * c.count)
            );
        }
        push_child(&mut out, &c.label, sub);
    }
    out.push((")".into(), String::new()));
    out
}

fn push_child(out: &mut Vec<(String, String)>, label: &str, sub: Vec<(String, String)>) {
    for (k, (line, note)) in sub.into_iter().enumerate() {
        let line = if k == 0 {
            format!("  {label}{line}")
        } else {
            format!("  {line}")
        };
        out.push((line, note));
    }
}

pub fn render_annotated(config: &ModelConfig, dtypes: &Dtypes, max_depth: usize) -> String {
    let tree = model_tree(config);
    let lines = annotated(&tree, dtypes, 0, max_depth);
    let width = lines
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let mut s = String::new();
    for (l, n) in lines {
        if n.is_empty() {
            s.push_str(&l);
        } else {
            s.push_str(&format!("{l:<width$}  # {n}"));
        }
        s.push('\n');
    }
    s
}

pub fn tree_json(node: &ModuleNode, dtypes: &Dtypes) -> Value {
    json!({
        "name": node.name,
        "path": node.path,
        "class": node.class,
        "extra_repr": node.extra_repr,
        "num_params": node.num_params(),
        "params": node.params.iter().map(|p| json!({
            "name": p.path,
            "shape": p.shape,
            "dtype": dtypes.get(&p.path),
            "tied_to": p.tied_to,
        })).collect::<Vec<_>>(),
        "children": node.children.iter().map(|c| tree_json(c, dtypes)).collect::<Vec<_>>(),
    })
}
