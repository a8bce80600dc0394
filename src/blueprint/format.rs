//! `trails fmt`: a blueprint in canonical form. Top-level sections go in one order (the
//! reference's, with `environments` right after `variables`), each with the comments written
//! directly above it; indentation, spacing and quoting are pretty_yaml's. Keys inside a section
//! keep the order they were written in. A result that would read differently from the input
//! (another value anywhere) is refused, so formatting can never change a blueprint's meaning.

use pretty_yaml::config::{FormatOptions, LanguageOptions, LayoutOptions};

/// The order of the top-level sections.
pub const ORDER: &[&str] = &[
    "blueprint",
    "region",
    "tags",
    "templates",
    "variables",
    "environments",
    "network",
    "iam",
    "eks",
    "postgres",
    "redis",
    "buckets",
    "kubernetes",
    "helm",
    "kafka",
    "clickhouse",
    "opensearch",
    "ingest",
    "state",
    "policy",
    "moved",
];

/// `text` in canonical form, or why it cannot be formatted.
pub fn format(text: &str) -> Result<String, String> {
    let before: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|error| format!("not valid YAML: {error}"))?;
    let ordered = ordered(text);
    let options = FormatOptions {
        layout: LayoutOptions {
            print_width: 100,
            indent_width: 2,
            ..LayoutOptions::default()
        },
        language: LanguageOptions::default(),
    };
    let formatted = pretty_yaml::format_text(&ordered, &options)
        .map_err(|error| format!("not valid YAML: {error}"))?;
    let after: serde_yaml::Value = serde_yaml::from_str(&formatted)
        .map_err(|error| format!("formatting made invalid YAML ({error}); left as it is"))?;
    if before != after {
        return Err("formatting would change what the blueprint says; left as it is".to_string());
    }
    Ok(formatted)
}

/// The top-level key a line starts, if it starts one (`network:` at column 0).
fn section(line: &str) -> Option<&str> {
    let first = line.chars().next()?;
    if first.is_whitespace() || matches!(first, '#' | '-' | '{' | '[' | '.' | '%') {
        return None;
    }
    let (key, _) = line.split_once(':')?;
    Some(key.trim().trim_matches(['"', '\'']))
}

/// `text` with its top-level sections in [`ORDER`] (unknown ones after, as written). The lines
/// before the first section's own comments stay first (a modeline, a header); a comment block
/// directly above a section (no blank line between) moves with it. A document with more than
/// one section of the same name, or with `---`, is left in its order.
fn ordered(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.iter().any(|line| line.starts_with("---")) {
        return text.to_string();
    }
    let starts: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, line)| section(line).is_some())
        .map(|(index, _)| index)
        .collect();
    if starts.is_empty() {
        return text.to_string();
    }
    // Each section begins at the comment lines right above its key.
    let begins: Vec<usize> = starts
        .iter()
        .map(|&start| {
            let mut begin = start;
            while begin > 0 && lines[begin - 1].starts_with('#') {
                begin -= 1;
            }
            begin
        })
        .collect();
    let header_end = begins[0];
    let mut blocks: Vec<(usize, usize, String)> = Vec::new();
    for (index, &begin) in begins.iter().enumerate() {
        let end = begins.get(index + 1).copied().unwrap_or(lines.len());
        let key = section(lines[starts[index]]).unwrap_or_default();
        let rank = ORDER
            .iter()
            .position(|name| *name == key)
            .unwrap_or(ORDER.len());
        // Trailing blank lines go: one blank line separates sections, wherever they go.
        let block = lines[begin..end].join("\n").trim_end().to_string();
        blocks.push((rank, index, block));
    }
    let mut keys: Vec<&str> = starts.iter().filter_map(|&s| section(lines[s])).collect();
    keys.sort_unstable();
    if keys.windows(2).any(|pair| pair[0] == pair[1]) {
        return text.to_string();
    }
    blocks.sort_by_key(|(rank, index, _)| (*rank, *index));
    let mut out = String::new();
    if header_end > 0 {
        out.push_str(&lines[..header_end].join("\n"));
        out.push('\n');
    }
    // A blank line around every section of more than one line; one-line settings
    // (`blueprint: demo`, `region: eu-west-1`) stay together.
    let mut previous_single = None;
    for (_, _, block) in blocks {
        let single = !block.contains('\n');
        match previous_single {
            None => {}
            Some(true) if single => out.push('\n'),
            Some(_) => out.push_str("\n\n"),
        }
        out.push_str(&block);
        previous_single = Some(single);
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_take_the_canonical_order_with_their_comments_and_the_header_stays() {
        let text = "# yaml-language-server: $schema=x.json\n\n# the buckets\nbuckets:\n  logs:   {}\n\
                    region: eu-west-1\n# who we are\nblueprint: demo\n";
        assert_eq!(
            format(text).expect("formats"),
            "# yaml-language-server: $schema=x.json\n\n# who we are\nblueprint: demo\n\n\
             region: eu-west-1\n\n# the buckets\nbuckets:\n  logs: {}\n"
        );
        let formatted = format(text).expect("formats");
        assert_eq!(format(&formatted).expect("formats again"), formatted);
    }

    #[test]
    fn the_order_names_every_top_level_field_of_the_schema() {
        let schema = crate::blueprint::reference::json_schema();
        let mut fields: Vec<&str> = schema["properties"]
            .as_object()
            .map(|properties| properties.keys().map(String::as_str).collect())
            .unwrap_or_default();
        fields.sort_unstable();
        let mut order = ORDER.to_vec();
        order.sort_unstable();
        assert_eq!(order, fields);
    }

    #[test]
    fn what_is_not_yaml_is_refused_not_rewritten() {
        assert!(format("a: [1, 2\n").is_err());
    }
}
