//! One program's man page, in the order of Postfix's and Dovecot's pages: NAME, SYNOPSIS,
//! DESCRIPTION, OPTIONS, COMMANDS (vmailctl's subcommands, all on one page as doveadm's
//! are listed), FILES, SIGNALS, EXIT STATUS, SEE ALSO. clap_mangen renders NAME, SYNOPSIS and
//! OPTIONS from the command; the rest is composed here with roff.

use clap_mangen::roff::{bold, italic, roman, Inline, Roff};
use clap_mangen::Man;

use crate::Program;

/// The header line every page carries (the .TH source and manual fields).
pub(crate) const SOURCE: &str = concat!("vmail ", env!("CARGO_PKG_VERSION"));
pub(crate) const MANUAL: &str = "vmail Manual";

/// The page's date: `$SOURCE_DATE_EPOCH`'s (reproducible builds set it), else today's.
pub(crate) fn date() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The roff text of `p`'s page.
pub fn render(p: &Program) -> String {
    let mut cmd = p.command.clone().disable_help_subcommand(true);
    cmd.build();
    let man = Man::new(cmd.clone())
        .section(p.section)
        .date(date())
        .source(SOURCE)
        .manual(MANUAL);
    let mut out = piece(|w| man.render_title(w));
    out += &piece(|w| man.render_name_section(w));
    out += &piece(|w| man.render_synopsis_section(w));

    let (description, signals) = after_help_sections(&cmd);
    let mut roff = Roff::new();
    roff.control("SH", ["DESCRIPTION"]);
    if let Some(about) = cmd.get_long_about().or_else(|| cmd.get_about()) {
        roff.text([roman(about.to_string())]);
    }
    for para in p.description {
        roff.control("PP", []);
        roff.text([roman(*para)]);
    }
    for para in &description {
        paragraph(&mut roff, para);
    }
    out += strip_preamble(&roff.render());

    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        out += &piece(|w| man.render_options_section(w));
    }

    let mut roff = Roff::new();
    if cmd.has_subcommands() {
        roff.control("SH", ["COMMANDS"]);
        commands(&mut roff, &cmd, &[]);
    }
    roff.control("SH", ["FILES"]);
    for (path, what) in &p.files {
        roff.control("TP", []);
        roff.text([bold(path.as_str())]);
        roff.text([roman(what.as_str())]);
    }
    if !signals.is_empty() {
        roff.control("SH", ["SIGNALS"]);
        for para in &signals {
            paragraph(&mut roff, para.trim_start_matches(SIGNALS).trim_start());
        }
    }
    roff.control("SH", ["EXIT STATUS"]);
    for (status, what) in &p.exit_status {
        roff.control("TP", []);
        roff.text([bold(status.as_str())]);
        roff.text([roman(*what)]);
    }
    roff.control("SH", ["SEE ALSO"]);
    let see: Vec<Inline> = p
        .see_also
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            let (name, sect) = s.split_once('(').unwrap_or((s, ""));
            let sep = if i + 1 < p.see_also.len() { ", " } else { "" };
            [bold(name), roman(format!("({sect}{sep}"))]
        })
        .collect();
    roff.text(see);
    out += strip_preamble(&roff.render());
    out
}

/// One of clap_mangen's sections, without the preamble only the page's first line needs.
fn piece(f: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> String {
    let mut buf = Vec::new();
    // Writing into a Vec cannot fail; roff's writers only pass the Vec's result on.
    let _ = f(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    if text.contains(".TH ") {
        text.into_owned()
    } else {
        strip_preamble(&text).to_string()
    }
}

/// Every piece of roff starts with the same apostrophe preamble; the page needs it once.
fn strip_preamble(roff: &str) -> &str {
    match roff.find("\n.SH") {
        Some(i) if !roff.starts_with(".SH") => &roff[i + 1..],
        _ => roff,
    }
}

/// The command's closing help text, split into paragraphs: those opening with `Signals:`
/// become the SIGNALS section, the rest follow the description.
fn after_help_sections(cmd: &clap::Command) -> (Vec<String>, Vec<String>) {
    let text = cmd
        .get_after_long_help()
        .or_else(|| cmd.get_after_help())
        .map(|t| t.to_string())
        .unwrap_or_default();
    text.split("\n\n")
        .map(str::trim_end)
        .filter(|p| !p.trim().is_empty())
        .map(str::to_string)
        .partition(|p| !p.starts_with(SIGNALS))
}

const SIGNALS: &str = "Signals:";

/// A help paragraph: filled text, except that lines indented in the terminal's layout (a
/// table of sockets or maps) keep their layout.
pub(crate) fn paragraph(roff: &mut Roff, para: &str) {
    roff.control("PP", []);
    keep_tables(roff, para);
}

/// Lines of help text: filled, but indented lines keep their layout.
pub(crate) fn keep_tables(roff: &mut Roff, text: &str) {
    let mut in_table = false;
    for line in text.lines() {
        let indented = line.starts_with(' ');
        if indented != in_table {
            roff.control(if indented { "nf" } else { "fi" }, []);
            in_table = indented;
        }
        roff.text([roman(line)]);
    }
    if in_table {
        roff.control("fi", []);
    }
}

/// Every subcommand, depth first, with its arguments, as `.TP` entries under COMMANDS.
fn commands(roff: &mut Roff, cmd: &clap::Command, path: &[&str]) {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let mut path = path.to_vec();
        path.push(sub.get_name());
        if sub.has_subcommands() {
            commands(roff, sub, &path);
            continue;
        }
        let mut head = vec![bold(path.join(" "))];
        for arg in sub.get_arguments().filter(|a| shown(a)) {
            head.push(roman(" "));
            head.extend(arg_synopsis(arg));
        }
        roff.control("TP", []);
        roff.text(head);
        if let Some(about) = sub.get_long_about().or_else(|| sub.get_about()) {
            roff.text([roman(about.to_string())]);
        }
        let described: Vec<_> = sub
            .get_arguments()
            .filter(|a| shown(a) && a.get_help().is_some())
            .collect();
        if !described.is_empty() {
            roff.control("RS", []);
            for arg in described {
                roff.control("TP", []);
                roff.text(arg_synopsis(arg));
                if let Some(help) = arg.get_long_help().or_else(|| arg.get_help()) {
                    roff.text([roman(help.to_string())]);
                }
            }
            roff.control("RE", []);
        }
    }
}

/// A subcommand's own arguments: not the global ones (listed under OPTIONS) nor help.
fn shown(arg: &clap::Arg) -> bool {
    !arg.is_hide_set() && !arg.is_global_set() && arg.get_id() != "help"
}

/// `--long VALUE`, `-s VALUE` or `NAME` (optional ones in brackets).
fn arg_synopsis(arg: &clap::Arg) -> Vec<Inline> {
    let value = arg
        .get_value_names()
        .and_then(|v| v.first().map(|n| n.to_string()))
        .unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
    let mut out = Vec::new();
    let optional = !arg.is_required_set();
    if arg.is_positional() {
        out.push(roman(if optional { "[" } else { "" }));
        out.push(italic(value));
        out.push(roman(if optional { "]" } else { "" }));
        return out;
    }
    let flag = match (arg.get_long(), arg.get_short()) {
        (Some(l), _) => format!("--{l}"),
        (None, Some(s)) => format!("-{s}"),
        (None, None) => return out,
    };
    out.push(roman("["));
    out.push(bold(flag));
    if arg.get_action().takes_values() {
        out.push(roman(" "));
        out.push(italic(value));
    }
    out.push(roman("]"));
    out
}
