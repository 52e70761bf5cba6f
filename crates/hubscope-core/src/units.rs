//! How counts and sizes are shown, the same in the terminal and the page.

/// `494032768` → `494,032,768`.
pub fn group_digits(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Decimal units, as the Hub and disk tools show sizes: `272269312` → `272.27 MB`.
pub fn human_bytes(b: u64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.2} {}", units[u])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats() {
        assert_eq!(super::group_digits(494_032_768), "494,032,768");
        assert_eq!(super::group_digits(12), "12");
        assert_eq!(super::human_bytes(272_269_312), "272.27 MB");
        assert_eq!(super::human_bytes(999), "999 B");
    }
}
