//! `trails validate`.

use clap::Args;

use super::{Failure, Outcome, Output, Target};
use crate::blueprint::{Diagnostic, Diagnostics, Source};

/// Arguments of `trails validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    target: Target,
}

/// Checks one environment, or every environment when none is named.
pub fn run(args: ValidateArgs, output: Output) -> Result<Outcome, Failure> {
    let source = Source::read(&args.target.file)?;
    let environments = match &args.target.environment {
        Some(environment) => vec![source.select(Some(environment))?],
        None => source.environments(),
    };
    let overrides = args.target.overrides()?;
    let mut problems: Vec<Diagnostic> = Vec::new();
    let mut reports = Vec::new();
    for environment in &environments {
        let result = source
            .load_with(environment, &overrides)
            .and_then(|loaded| {
                let diagnostics = crate::blueprint::validate::validate(&loaded);
                if diagnostics.iter().any(Diagnostic::is_error) {
                    return Err(Diagnostics(diagnostics));
                }
                let graph = crate::graph::build(&loaded, crate::resources::expand)?;
                // Templates are rendered as apply would render them: what does not render,
                // is not YAML or has a field Kubernetes does not know fails here, not there.
                let rendered = crate::render::render(&loaded, &graph);
                if !rendered.problems.is_empty() {
                    return Err(Diagnostics(crate::render::diagnostics(&rendered, &loaded)));
                }
                Ok((graph.len(), diagnostics))
            });
        match result {
            Ok((count, warnings)) => {
                reports.push(format!(
                    "{}: environment `{environment}` is valid ({count} resources)",
                    args.target.file.display()
                ));
                for warning in warnings {
                    if !problems.contains(&warning) {
                        problems.push(warning);
                    }
                }
            }
            Err(Diagnostics(found)) => {
                for diagnostic in found {
                    // The same mistake in the shared part shows up once, not once per environment.
                    if !problems.contains(&diagnostic) {
                        problems.push(diagnostic);
                    }
                }
            }
        }
    }
    if problems.iter().any(Diagnostic::is_error) {
        return Err(Diagnostics(problems).into());
    }
    if !output.quiet {
        for warning in &problems {
            eprintln!("{}", console::style(warning).yellow().for_stderr());
        }
        for report in reports {
            println!("{report}");
        }
    }
    Ok(Outcome::Success)
}
