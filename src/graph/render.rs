//! The graph as Graphviz DOT or Mermaid, edges pointing from a dependency to its dependent.

use super::Graph;

/// Output format of `trails graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Graphviz DOT.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
}

/// Renders the graph; resources keep the plan's order so the output is stable.
pub fn render(graph: &Graph, format: Format) -> String {
    let mut out = String::new();
    match format {
        Format::Dot => {
            out.push_str(
                "digraph trails {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
            );
            for resource in graph.resources() {
                out.push_str(&format!(
                    "  \"{}\" [tooltip=\"{}\"];\n",
                    resource.address, resource.kind.summary
                ));
            }
            for resource in graph.resources() {
                for dependency in &resource.depends_on {
                    out.push_str(&format!(
                        "  \"{dependency}\" -> \"{}\";\n",
                        resource.address
                    ));
                }
            }
            out.push_str("}\n");
        }
        Format::Mermaid => {
            out.push_str("flowchart LR\n");
            let id = |address: &str| address.replace(['.', '-'], "_");
            for resource in graph.resources() {
                out.push_str(&format!(
                    "  {}[\"{}\"]\n",
                    id(&resource.address),
                    resource.address
                ));
            }
            for resource in graph.resources() {
                for dependency in &resource.depends_on {
                    out.push_str(&format!(
                        "  {} --> {}\n",
                        id(dependency),
                        id(&resource.address)
                    ));
                }
            }
        }
    }
    out
}
