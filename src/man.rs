//! `itersnap man`: the man page, from the command-line definition and the
//! docs. clap_mangen renders NAME, SYNOPSIS, DESCRIPTION and the option
//! sections from src/cli.rs; the sections after them are the docs' own
//! text, embedded at build time and turned from markdown into roff by the
//! small converter below, so that the page and the docs say the same.
//!
//! The converter knows the markdown the docs are written in: `#` headings,
//! paragraphs, fenced (and indented) code, `-`/`*` and numbered lists
//! (nested by indentation), tables, and inline `code`, **bold** and
//! [links](target). It never fails and never panics: anything else is
//! text, and everything is escaped for roff (backslashes, a line's leading
//! `.` or `'`, dashes and apostrophes in code, characters beyond ASCII).

use std::io::{self, Write};

use clap::CommandFactory;

use crate::cli::Cli;

const README: &str = include_str!("../README.md");
const USAGE: &str = include_str!("../docs/usage.md");
const JSON: &str = include_str!("../docs/json.md");
const BACKENDS: &str = include_str!("../docs/backends.md");
const SAFETY: &str = include_str!("../docs/safety.md");

/// Where in a doc a source is.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// The text between the `#` title and the first `##` heading.
    Intro,
    /// A `##` section, from its heading (given without the `## `) to the next.
    Named(&'static str),
    /// Everything after the `#` title.
    Whole,
}

/// What of a doc's section goes into the page.
#[derive(Debug, Clone, Copy)]
enum Take {
    /// Every block (but code blocks longer than `MAX_CODE_LINES`).
    All,
    /// Every block but code blocks.
    Prose,
    /// Every block but the `###` subsection of this name.
    AllBut(&'static str),
    /// The first code block, each `command  # comment` line as an entry.
    Examples,
    /// The first list: each item's bold lead and the first two sentences
    /// of its first paragraph.
    Summary,
}

#[derive(Debug, Clone, Copy)]
struct Source {
    file: &'static str,
    text: &'static str,
    place: Place,
    take: Take,
}

/// One `.SH` section of the page: its first source is the text under the
/// header, each further source a `.SS` titled with its own heading.
struct Part {
    title: &'static str,
    from: &'static [Source],
}

const fn src(file: &'static str, text: &'static str, place: Place, take: Take) -> Source {
    Source {
        file,
        text,
        place,
        take,
    }
}

/// A code block longer than this is left out: the docs show it whole, a
/// man page would be pages of it.
const MAX_CODE_LINES: usize = 20;

/// What the page holds beyond clap's sections, by one rule: a section of
/// the page is made of whole named sections of the docs (a `##` heading and
/// everything under it, its `###` subsections as `.SS`), so that nothing is
/// written twice, here and in a doc. From that whole, only code blocks over
/// `MAX_CODE_LINES` are left out, and what `Take` says: usage.md's option
/// table (clap's OPTIONS says it, from the same definitions), the short
/// form of safety.md's bounds for SAFETY, and the README's everyday
/// questions as EXAMPLES entries. DESCRIPTION gets the README's opening
/// after clap's one line, and SEE ALSO the README's table of the docs;
/// only the SUBCOMMANDS list (from clap) and the man pages in SEE ALSO are
/// written here.
const PAGE: &[Part] = &[
    Part {
        title: "COLUMNS",
        from: &[src(
            "docs/usage.md",
            USAGE,
            Place::Named("What a snapshot shows"),
            Take::AllBut("Options"),
        )],
    },
    Part {
        title: "TRIGGERED SNAPSHOTS",
        from: &[src(
            "docs/usage.md",
            USAGE,
            Place::Named("Triggers"),
            Take::All,
        )],
    },
    Part {
        title: "BACKENDS",
        from: &[
            src(
                "docs/backends.md",
                BACKENDS,
                Place::Named("Backends"),
                Take::All,
            ),
            src(
                "docs/backends.md",
                BACKENDS,
                Place::Named("`itersnap check`"),
                Take::All,
            ),
            src(
                "docs/backends.md",
                BACKENDS,
                Place::Named("Kernel requirements"),
                Take::All,
            ),
        ],
    },
    Part {
        title: "JSON OUTPUT",
        from: &[src("docs/json.md", JSON, Place::Whole, Take::All)],
    },
    Part {
        title: "EXIT STATUS",
        from: &[src(
            "docs/usage.md",
            USAGE,
            Place::Named("Errors and exit status"),
            Take::All,
        )],
    },
    Part {
        title: "ENVIRONMENT",
        from: &[src(
            "docs/usage.md",
            USAGE,
            Place::Named("Environment"),
            Take::All,
        )],
    },
    Part {
        title: "FILES",
        from: &[src(
            "docs/usage.md",
            USAGE,
            Place::Named("Files"),
            Take::All,
        )],
    },
    Part {
        title: "SAFETY",
        from: &[src(
            "docs/safety.md",
            SAFETY,
            Place::Named("Safety"),
            Take::Summary,
        )],
    },
    Part {
        title: "PERFORMANCE",
        from: &[src(
            "README.md",
            README,
            Place::Named("Performance"),
            Take::All,
        )],
    },
    Part {
        title: "EXAMPLES",
        from: &[src(
            "README.md",
            README,
            Place::Named("Everyday questions"),
            Take::Examples,
        )],
    },
];

/// Appended to clap's DESCRIPTION: the README's opening, its examples left
/// to EXAMPLES.
const DESCRIPTION: Source = src("README.md", README, Place::Intro, Take::Prose);

/// The README's table of the docs, after the man pages of SEE ALSO.
const DOCUMENTATION: Source = src(
    "README.md",
    README,
    Place::Named("Documentation"),
    Take::All,
);

const SEE_ALSO: &str = "\\fBpgrep\\fR(1), \\fBps\\fR(1), \\fBproc\\fR(5), \
\\fBbpftool\\fR(8), \\fBbpftrace\\fR(8), \\fBlsof\\fR(8), \\fBss\\fR(8)\n\
.PP\n\
The documentation in itersnap\\(aqs source tree:\n";

/// Writes the whole page.
pub fn write(w: &mut dyn Write) -> io::Result<()> {
    let mut cmd = Cli::command();
    cmd.build();
    let man = clap_mangen::Man::new(cmd.clone());
    let mut head = Vec::new();
    man.render_title(&mut head)?;
    // clap_mangen starts every rendered piece with the same preamble.
    let title_at = find_bytes(&head, b".TH ").unwrap_or(0);
    let preamble = head[..title_at].to_vec();
    w.write_all(&head)?;
    // No hyphenation: the page is full of names (`--interval`,
    // `skipped.min_gap`, docs/snapshot.schema.json) that must not break.
    w.write_all(b".nh\n")?;
    let clap_part = |render: &dyn Fn(&mut Vec<u8>) -> io::Result<()>| -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        render(&mut buf)?;
        Ok(match buf.strip_prefix(preamble.as_slice()) {
            Some(rest) => rest.to_vec(),
            None => buf,
        })
    };
    w.write_all(&clap_part(&|b| man.render_name_section(b))?)?;
    w.write_all(synopsis(&cmd).as_bytes())?;
    w.write_all(&clap_part(&|b| man.render_description_section(b))?)?;
    w.write_all(source_roff(&DESCRIPTION, false, false).as_bytes())?;
    w.write_all(&clap_part(&|b| man.render_options_section(b))?)?;
    w.write_all(subcommands(&cmd).as_bytes())?;
    for part in PAGE {
        w.write_all(part_roff(part).as_bytes())?;
    }
    w.write_all(&clap_part(&|b| man.render_version_section(b))?)?;
    w.write_all(b".SH \"SEE ALSO\"\n")?;
    w.write_all(SEE_ALSO.as_bytes())?;
    w.write_all(source_roff(&DOCUMENTATION, false, false).as_bytes())
}

fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// SYNOPSIS from the clap definitions: every visible option with the name
/// of its value (`[-p|--pid PID]`), the COMM operands, then each visible
/// subcommand with its operands.
fn synopsis(cmd: &clap::Command) -> String {
    let value_name = |arg: &clap::Arg| {
        arg.get_value_names()
            .and_then(|v| v.first().map(|n| n.to_string()))
            .unwrap_or_else(|| arg.get_id().as_str().to_uppercase())
    };
    let mut line = String::from("\\fBitersnap\\fR");
    for arg in cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !a.is_positional())
    {
        let mut names = Vec::new();
        if let Some(short) = arg.get_short() {
            names.push(format!("\\fB\\-{}\\fR", code_text(&short.to_string())));
        }
        if let Some(long) = arg.get_long() {
            names.push(format!("\\fB\\-\\-{}\\fR", code_text(long)));
        }
        let mut item = names.join("|");
        if arg.get_action().takes_values() {
            item.push_str(&format!(" \\fI{}\\fR", code_text(&value_name(arg))));
        }
        line.push_str(&format!(" [{item}]"));
    }
    for arg in cmd.get_positionals().filter(|a| !a.is_hide_set()) {
        line.push_str(&format!(" [\\fI{}\\fR...]", code_text(&value_name(arg))));
    }
    let mut out = format!(".SH SYNOPSIS\n{line}\n");
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let mut line = format!("\\fBitersnap {}\\fR", code_text(sub.get_name()));
        for arg in sub.get_positionals().filter(|a| !a.is_hide_set()) {
            line.push_str(&format!(" \\fI{}\\fR", code_text(&value_name(arg))));
        }
        out.push_str(&format!(".br\n{line}\n"));
    }
    out
}

/// SUBCOMMANDS from the clap definitions: each visible subcommand as
/// `itersnap NAME ARGS`, its help, and the values its arguments take.
fn subcommands(cmd: &clap::Command) -> String {
    let mut out = String::from(".SH SUBCOMMANDS\n");
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let mut tag = format!("\\fBitersnap {}\\fR", code_text(sub.get_name()));
        let mut values = Vec::new();
        for arg in sub.get_positionals().filter(|a| !a.is_hide_set()) {
            let name = arg
                .get_value_names()
                .and_then(|v| v.first().map(|n| n.to_string()))
                .unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
            let shown = format!("\\fI{}\\fR", code_text(&name));
            if arg.is_required_set() {
                tag.push_str(&format!(" {shown}"));
            } else {
                tag.push_str(&format!(" [{shown}]"));
            }
            let possible: Vec<String> = arg
                .get_possible_values()
                .iter()
                .filter(|v| !v.is_hide_set())
                .map(|v| code_text(v.get_name()))
                .collect();
            if !possible.is_empty() {
                values.push(format!(
                    "\\fI{}\\fR: {}",
                    code_text(&name),
                    possible.join(", ")
                ));
            }
        }
        out.push_str(".TP\n");
        push_text(&mut out, &tag);
        if let Some(about) = sub.get_about() {
            push_text(&mut out, &inline(&about.to_string(), false, 0));
        }
        for v in values {
            out.push_str(".br\n");
            push_text(&mut out, &v);
        }
    }
    out
}

/// One `.SH` section of the page, from its sources.
fn part_roff(part: &Part) -> String {
    let mut out = format!(".SH {}\n", macro_arg(part.title));
    for (i, source) in part.from.iter().enumerate() {
        out.push_str(&source_roff(source, i > 0, true));
    }
    out
}

/// A source as roff; `subsection`: under a `.SS` of its own heading;
/// `fresh`: right after a header (no paragraph macro needed first).
fn source_roff(source: &Source, subsection: bool, fresh: bool) -> String {
    let mut r = Roff::new();
    r.fresh = fresh;
    let Some((heading, lines)) = section_lines(source.text, source.place) else {
        return r.out;
    };
    let place = match source.place {
        Place::Intro => "the opening".to_string(),
        Place::Named(name) => format!("## {name}"),
        Place::Whole => "the whole".to_string(),
    };
    r.line(&format!(".\\\" From {}: {place}.", source.file));
    if subsection {
        if let Some(h) = heading {
            r.heading(3, &h);
        }
    }
    let blocks = parse(&lines, 0);
    match source.take {
        Take::All => r.blocks(&blocks, false),
        Take::Prose => {
            let prose: Vec<Block> = blocks
                .into_iter()
                .filter(|b| !matches!(b, Block::Code(_)))
                .collect();
            r.blocks(&prose, false)
        }
        Take::AllBut(sub) => r.blocks(&without_subsection(blocks, sub), false),
        Take::Examples => {
            if let Some(Block::Code(code)) = blocks.iter().find(|b| matches!(b, Block::Code(_))) {
                r.examples(code);
            }
        }
        Take::Summary => r.blocks(&summary(&blocks), false),
    }
    r.out
}

/// The lines of a doc at `place`, and the heading that starts them.
/// Headings inside fenced code do not count.
fn section_lines(text: &str, place: Place) -> Option<(Option<String>, Vec<String>)> {
    let mut in_fence = false;
    let mut found = matches!(place, Place::Whole | Place::Intro);
    let mut heading = None;
    let mut lines = Vec::new();
    for line in text.lines() {
        let fence = line.trim_start().starts_with("```");
        if !in_fence {
            if line.starts_with("# ") {
                continue;
            }
            if let Some(h) = line.strip_prefix("## ") {
                match place {
                    Place::Whole => {}
                    Place::Intro => break,
                    Place::Named(_) if found => break,
                    Place::Named(name) => {
                        if h.trim() == name {
                            found = true;
                            heading = Some(h.trim().to_string());
                        }
                        continue;
                    }
                }
            }
        }
        if fence {
            in_fence = !in_fence;
        }
        if found {
            lines.push(line.to_string());
        }
    }
    found.then_some((heading, lines))
}

/// Blocks of the markdown the docs use.
#[derive(Debug, Clone, PartialEq)]
enum Block {
    Heading(usize, String),
    Para(String),
    Code(Vec<String>),
    List {
        ordered: bool,
        items: Vec<Vec<Block>>,
    },
    Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    },
}

/// Lists nest at most this deep; deeper items are text of their parent.
const MAX_DEPTH: usize = 4;

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// `- x`, `* x` or `12. x`: (indent, ordered, column of the text).
fn list_marker(line: &str) -> Option<(usize, bool, usize)> {
    let indent = indent_of(line);
    let rest = &line[indent..];
    if rest.starts_with("- ") || rest.starts_with("* ") {
        return Some((indent, false, indent + 2));
    }
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if (1..=9).contains(&digits) && rest[digits..].starts_with(". ") {
        return Some((indent, true, indent + digits + 2));
    }
    None
}

fn is_separator_row(line: &str) -> bool {
    let cells = split_row(line);
    !cells.is_empty()
        && cells.iter().all(|c| {
            let c = c.trim().trim_start_matches(':').trim_end_matches(':');
            !c.is_empty() && c.chars().all(|ch| ch == '-')
        })
}

fn starts_table(lines: &[String], at: usize) -> bool {
    lines[at].trim_start().starts_with('|')
        && lines.get(at + 1).is_some_and(|l| is_separator_row(l))
}

/// The cells of `| a | b \| c |`: split at unescaped pipes, `\|` kept as `|`.
fn split_row(line: &str) -> Vec<String> {
    let t = line.trim();
    let t = t.strip_prefix('|').unwrap_or(t);
    let t = if t.ends_with('|') && !t.ends_with("\\|") {
        &t[..t.len() - 1]
    } else {
        t
    };
    let mut cells = vec![String::new()];
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                chars.next();
                if let Some(cell) = cells.last_mut() {
                    cell.push('|');
                }
            }
            '|' => cells.push(String::new()),
            _ => {
                if let Some(cell) = cells.last_mut() {
                    cell.push(c);
                }
            }
        }
    }
    cells.into_iter().map(|c| c.trim().to_string()).collect()
}

/// Where a paragraph stops: a blank line or the start of another block.
fn ends_paragraph(lines: &[String], at: usize) -> bool {
    let line = &lines[at];
    let t = line.trim_start();
    t.is_empty()
        || t.starts_with("```")
        || t.starts_with('#')
        || list_marker(line).is_some()
        || starts_table(lines, at)
}

fn parse(lines: &[String], depth: usize) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut at = 0;
    while at < lines.len() {
        let line = &lines[at];
        let t = line.trim_start();
        if t.is_empty() {
            at += 1;
        } else if t.starts_with("```") {
            at = parse_fence(lines, at, &mut blocks);
        } else if let Some(h) = heading(t) {
            blocks.push(h);
            at += 1;
        } else if starts_table(lines, at) {
            at = parse_table(lines, at, &mut blocks);
        } else if let Some(marker) = list_marker(line) {
            at = parse_list(lines, at, marker, depth, &mut blocks);
        } else if indent_of(line) >= 4 {
            at = parse_indented_code(lines, at, &mut blocks);
        } else {
            let start = at;
            at += 1;
            while at < lines.len() && !ends_paragraph(lines, at) {
                at += 1;
            }
            let text: Vec<&str> = lines[start..at].iter().map(|l| l.trim()).collect();
            blocks.push(Block::Para(text.join("\n")));
        }
    }
    blocks
}

fn heading(t: &str) -> Option<Block> {
    let level = t.len() - t.trim_start_matches('#').len();
    let text = t[level..].strip_prefix(' ')?;
    (1..=6)
        .contains(&level)
        .then(|| Block::Heading(level, text.trim().to_string()))
}

fn parse_fence(lines: &[String], at: usize, blocks: &mut Vec<Block>) -> usize {
    let indent = indent_of(&lines[at]);
    let mut code = Vec::new();
    let mut i = at + 1;
    while i < lines.len() && !lines[i].trim_start().starts_with("```") {
        let line = &lines[i];
        code.push(line[indent_of(line).min(indent)..].to_string());
        i += 1;
    }
    blocks.push(Block::Code(code));
    i + 1 // past the closing fence (or the end)
}

fn parse_indented_code(lines: &[String], at: usize, blocks: &mut Vec<Block>) -> usize {
    let mut i = at;
    while i < lines.len() && (lines[i].trim().is_empty() || indent_of(&lines[i]) >= 4) {
        i += 1;
    }
    let mut code: Vec<String> = lines[at..i]
        .iter()
        .map(|l| l[indent_of(l).min(4)..].to_string())
        .collect();
    while code.last().is_some_and(|l| l.trim().is_empty()) {
        code.pop();
    }
    blocks.push(Block::Code(code));
    i
}

fn parse_table(lines: &[String], at: usize, blocks: &mut Vec<Block>) -> usize {
    let header = split_row(&lines[at]);
    let mut rows = Vec::new();
    let mut i = at + 2;
    while i < lines.len() && lines[i].trim_start().starts_with('|') {
        rows.push(split_row(&lines[i]));
        i += 1;
    }
    blocks.push(Block::Table { header, rows });
    i
}

/// A list: items of one kind at one indentation, each with the lines
/// indented under it (nested blocks, parsed in turn) or following it lazily.
fn parse_list(
    lines: &[String],
    at: usize,
    (indent, ordered, _): (usize, bool, usize),
    depth: usize,
    blocks: &mut Vec<Block>,
) -> usize {
    let mut items = Vec::new();
    let mut i = at;
    while let Some((ind, ord, col)) = lines.get(i).and_then(|l| list_marker(l)) {
        if ind != indent || ord != ordered {
            break;
        }
        let mut item = vec![lines[i][col.min(lines[i].len())..].to_string()];
        i += 1;
        while i < lines.len() {
            let line = &lines[i];
            if line.trim().is_empty() {
                // A blank line: the item goes on if what follows is indented under it.
                let next = lines[i..].iter().position(|l| !l.trim().is_empty());
                match next.map(|n| &lines[i + n]) {
                    Some(l) if indent_of(l) >= col => item.push(String::new()),
                    _ => break,
                }
            } else if indent_of(line) >= col {
                item.push(line[col..].to_string());
            } else if list_marker(line).is_some() || ends_paragraph(lines, i) {
                break;
            } else {
                item.push(line.trim().to_string()); // a lazy continuation
            }
            i += 1;
        }
        items.push(if depth < MAX_DEPTH {
            parse(&item, depth + 1)
        } else {
            vec![Block::Para(item.join("\n"))]
        });
    }
    blocks.push(Block::List { ordered, items });
    i
}

/// The blocks without the `###` subsection `name` (to the next heading of
/// its level or above).
fn without_subsection(blocks: Vec<Block>, name: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut skipping = false;
    for b in blocks {
        if let Block::Heading(level, text) = &b {
            if *level <= 3 {
                skipping = *level == 3 && text == name;
            }
        }
        if !skipping {
            out.push(b);
        }
    }
    out
}

/// The first list, each item cut to its bold lead and two sentences.
fn summary(blocks: &[Block]) -> Vec<Block> {
    let Some(Block::List { items, .. }) = blocks.iter().find(|b| matches!(b, Block::List { .. }))
    else {
        return Vec::new();
    };
    let items = items
        .iter()
        .filter_map(|item| match item.first() {
            Some(Block::Para(text)) => Some(vec![Block::Para(lead_and_sentences(text, 2))]),
            _ => None,
        })
        .collect();
    vec![Block::List {
        ordered: false,
        items,
    }]
}

/// `**Lead.** One. Two. Three.` → `**Lead.** One. Two.`. A sentence ends
/// at a `.` followed by a space or the end, outside code and parentheses
/// (not `e.g.`); a last fragment ending in `:` only introduces what was
/// left out, and goes with it.
fn lead_and_sentences(text: &str, n: usize) -> String {
    let start = text
        .strip_prefix("**")
        .and_then(|rest| rest.find("**"))
        .map_or(0, |end| end + 4);
    let mut ends = Vec::new();
    let (mut in_code, mut depth) = (false, 0usize);
    let bytes = text.as_bytes();
    for (i, c) in text.char_indices().skip_while(|(i, _)| *i < start) {
        match c {
            '`' => in_code = !in_code,
            '(' if !in_code => depth += 1,
            ')' if !in_code => depth = depth.saturating_sub(1),
            '.' if !in_code && depth == 0 => {
                let next_is_space = bytes.get(i + 1).is_none_or(|b| b.is_ascii_whitespace());
                let abbreviation = text[..i].ends_with("e.g") || text[..i].ends_with("i.e");
                if next_is_space && !abbreviation {
                    ends.push(i + 1);
                }
            }
            _ => {}
        }
    }
    let cut = match ends.get(n.saturating_sub(1)) {
        Some(&end) => end,
        None => {
            let last = ends.last().copied().unwrap_or(start);
            if text[last..].trim_end().ends_with(':') {
                last
            } else {
                text.len()
            }
        }
    };
    text[..cut].trim_end().to_string()
}

/// Roff being written, and whether a paragraph macro is needed before the
/// next text (not right after `.SH`/`.SS`).
struct Roff {
    out: String,
    fresh: bool,
}

impl Roff {
    fn new() -> Roff {
        Roff {
            out: String::new(),
            fresh: true,
        }
    }

    fn line(&mut self, s: &str) {
        self.out.push_str(s);
        self.out.push('\n');
    }

    /// A paragraph break: `.PP`, or `.IP` inside a list item.
    fn para_break(&mut self, in_item: bool) {
        if in_item {
            self.line(".IP");
        } else if !self.fresh {
            self.line(".PP");
        }
    }

    fn heading(&mut self, level: usize, text: &str) {
        if level <= 3 {
            self.line(&format!(".SS {}", macro_arg(&plain(text))));
        } else {
            self.para_break(false);
            push_text(&mut self.out, &format!("\\fB{}\\fR", inline(text, true, 0)));
        }
        self.fresh = level <= 3;
    }

    fn blocks(&mut self, blocks: &[Block], in_item: bool) {
        for b in blocks {
            match b {
                Block::Heading(level, text) => self.heading(*level, text),
                Block::Para(text) => {
                    self.para_break(in_item);
                    push_text(&mut self.out, &inline(text, false, 0));
                }
                Block::Code(lines) => self.code(lines, in_item),
                Block::List { ordered, items } => self.list(*ordered, items, in_item),
                Block::Table { header, rows } => self.table(header, rows, in_item),
            }
            self.fresh = matches!(b, Block::Heading(level, _) if *level <= 3);
        }
    }

    fn code(&mut self, lines: &[String], in_item: bool) {
        if lines.len() > MAX_CODE_LINES {
            return;
        }
        self.para_break(in_item);
        if !in_item {
            self.line(".RS 4");
        }
        self.line(".nf");
        for l in lines {
            let text = code_text(&expand_tabs(l));
            if text.is_empty() {
                self.line("\\&");
            } else {
                push_line(&mut self.out, &text);
            }
        }
        self.line(".fi");
        if !in_item {
            self.line(".RE");
        }
    }

    fn list(&mut self, ordered: bool, items: &[Vec<Block>], in_item: bool) {
        if in_item {
            self.line(".RS");
        }
        let terms: Option<Vec<(&str, &str)>> = items
            .iter()
            .map(|item| match item.first() {
                Some(Block::Para(text)) if !ordered => definition(text),
                _ => None,
            })
            .collect();
        if let Some(terms) = terms.filter(|t| !t.is_empty()) {
            // `- `NAME`: text` items, as man pages list names: tagged.
            for ((term, text), item) in terms.iter().zip(items) {
                self.line(".TP");
                push_text(&mut self.out, &format!("\\fB{}\\fR", inline(term, true, 0)));
                push_text(&mut self.out, &inline(text, false, 0));
                self.fresh = false;
                self.blocks(item.get(1..).unwrap_or_default(), true);
            }
            if in_item {
                self.line(".RE");
            }
            return;
        }
        for (n, item) in items.iter().enumerate() {
            if ordered {
                self.line(&format!(".IP {}. 4", n + 1));
            } else {
                self.line(".IP \\(bu 2");
            }
            let rest = match item.split_first() {
                Some((Block::Para(text), rest)) => {
                    push_text(&mut self.out, &inline(text, false, 0));
                    rest
                }
                _ => item.as_slice(),
            };
            self.fresh = false;
            self.blocks(rest, true);
        }
        if in_item {
            self.line(".RE");
        }
    }

    /// A table as a list: the first cell as the tag; the second as the
    /// text, or each further cell under its column's name.
    fn table(&mut self, header: &[String], rows: &[Vec<String>], in_item: bool) {
        if in_item {
            self.line(".RS");
        }
        for row in rows {
            self.line(".TP");
            let tag = row.first().map(|c| inline(c, true, 0)).unwrap_or_default();
            if tag.is_empty() {
                self.line("\\&");
            } else {
                push_text(&mut self.out, &format!("\\fB{tag}\\fR"));
            }
            let cells: Vec<(usize, &String)> = row
                .iter()
                .enumerate()
                .skip(1)
                .filter(|(_, c)| !c.is_empty())
                .collect();
            for (k, (col, cell)) in cells.iter().enumerate() {
                if k > 0 {
                    self.line(".br");
                }
                let text = inline(cell, false, 0);
                match header.get(*col).filter(|_| row.len() > 2) {
                    Some(name) => push_text(
                        &mut self.out,
                        &format!("\\fI{}\\fR: {text}", inline(name, false, 0)),
                    ),
                    None => push_text(&mut self.out, &text),
                }
            }
        }
        if in_item {
            self.line(".RE");
        }
    }

    /// `command   # comment` lines (a comment alone on a line goes on the
    /// line before's) as tagged entries.
    fn examples(&mut self, code: &[String]) {
        let mut entries: Vec<(String, String)> = Vec::new();
        for line in code {
            let t = line.trim();
            if let Some(comment) = t.strip_prefix('#') {
                if let Some((_, c)) = entries.last_mut() {
                    c.push(' ');
                    c.push_str(comment.trim());
                    continue;
                }
            }
            if t.is_empty() {
                continue;
            }
            match line.find("  #") {
                Some(at) => entries.push((
                    line[..at].trim().to_string(),
                    line[at + 3..].trim().to_string(),
                )),
                None => entries.push((t.to_string(), String::new())),
            }
        }
        for (command, comment) in entries {
            self.line(".TP");
            push_text(&mut self.out, &format!("\\fB{}\\fR", code_text(&command)));
            let comment = comment.trim();
            if !comment.is_empty() {
                push_text(&mut self.out, &inline(comment, false, 0));
            }
        }
        self.fresh = false;
    }
}

/// `` `NAME`: text `` (what comes before the first `: ` outside code, if
/// the text starts with code): the term and its text.
fn definition(text: &str) -> Option<(&str, &str)> {
    if !text.starts_with('`') {
        return None;
    }
    let mut in_code = false;
    for (i, c) in text.char_indices() {
        match c {
            '`' => in_code = !in_code,
            ':' if !in_code => {
                let rest = &text[i + 1..];
                if rest.starts_with([' ', '\n']) {
                    return Some((&text[..i], rest.trim_start()));
                }
            }
            _ => {}
        }
    }
    None
}

fn expand_tabs(line: &str) -> String {
    let mut out = String::new();
    for c in line.chars() {
        if c == '\t' {
            out.push(' ');
            while out.chars().count() % 8 != 0 {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Appends rendered text, one roff line per line, each trimmed and, where
/// it would start with a control character, made text with `\&`.
fn push_text(out: &mut String, rendered: &str) {
    for line in rendered.split('\n') {
        let line = line.trim();
        if !line.is_empty() {
            push_line(out, line);
        }
    }
}

fn push_line(out: &mut String, line: &str) {
    if line.starts_with('.') || line.starts_with('\'') {
        out.push_str("\\&");
    }
    out.push_str(line);
    out.push('\n');
}

/// A macro argument: quoted, its quotes escaped.
fn macro_arg(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\\(dq"))
}

/// Heading text without its markup, escaped as code is (headings name
/// options: `--on-signal SIG`).
fn plain(text: &str) -> String {
    let mut s = String::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '[' {
            if let Some((inner, len)) = link(rest) {
                s.push_str(inner);
                rest = &rest[len..];
                continue;
            }
        }
        if c != '`' && c != '*' {
            s.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    code_text(&s)
}

/// Code, in a code span or block: every character as itself.
fn code_text(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            '\'' => out.push_str("\\(aq"),
            '`' => out.push_str("\\(ga"),
            '^' => out.push_str("\\(ha"),
            '~' => out.push_str("\\(ti"),
            c if c.is_ascii() => out.push(c),
            c => out.push_str(&special(c)),
        }
    }
    out
}

/// A character beyond ASCII: by its roff name where it has a common one,
/// else by its code point.
fn special(c: char) -> String {
    match c {
        '—' => "\\(em".into(),
        '–' => "\\(en".into(),
        '…' => "\\&...".into(),
        '≤' => "\\(<=".into(),
        '≥' => "\\(>=".into(),
        '×' => "\\(mu".into(),
        '±' => "\\(+-".into(),
        '→' => "\\(->".into(),
        '←' => "\\(<-".into(),
        'µ' => "\\(mc".into(),
        '‘' => "\\(oq".into(),
        '’' => "\\(cq".into(),
        '“' => "\\(lq".into(),
        '”' => "\\(rq".into(),
        '•' => "\\(bu".into(),
        c => format!("\\[u{:04X}]", c as u32),
    }
}

/// `[text](target)` at the start of `s`: the text and the length of the
/// whole link.
fn link(s: &str) -> Option<(&str, usize)> {
    let mut depth = 0usize;
    let mut close = None;
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    close = Some(i);
                    break;
                }
            }
            _ => {}
        }
    }
    let close = close?;
    let after = s[close + 1..].strip_prefix('(')?;
    let end = after.find(')')?;
    if after[..end].contains(char::is_whitespace) {
        return None;
    }
    Some((&s[1..close], close + 1 + 1 + end + 1))
}

/// Inline markup deeper than this (bold in a link in bold …) is text.
const MAX_INLINE_DEPTH: u8 = 4;

/// Markdown text → roff text: `code` and **bold** in bold, links as their
/// text, `\x` escapes; `bold`: the text around is bold (fonts go back to it).
fn inline(src: &str, bold: bool, depth: u8) -> String {
    let back = if bold { "\\fB" } else { "\\fR" };
    let markup = depth < MAX_INLINE_DEPTH;
    let mut out = String::new();
    let mut rest = src;
    let mut prev: Option<char> = None;
    while let Some(c) = rest.chars().next() {
        if markup && c == '`' {
            let ticks = rest.len() - rest.trim_start_matches('`').len();
            let after = &rest[ticks..];
            if let Some(end) = closing_ticks(after, ticks) {
                let code = after[..end].replace('\n', " ");
                let code = match code.strip_prefix(' ').and_then(|c| c.strip_suffix(' ')) {
                    Some(inner) if !inner.trim().is_empty() => inner.to_string(),
                    _ => code,
                };
                out.push_str(&format!("\\fB{}{back}", code_text(&code)));
                rest = &after[end + ticks..];
                prev = Some('`');
                continue;
            }
        }
        if markup && rest.starts_with("**") {
            if let Some(end) = rest[2..].find("**").filter(|&e| e > 0) {
                let inner = inline(&rest[2..2 + end], true, depth + 1);
                out.push_str(&format!("\\fB{inner}{back}"));
                rest = &rest[2 + end + 2..];
                prev = Some('*');
                continue;
            }
        }
        if markup && c == '[' {
            if let Some((text, len)) = link(rest) {
                out.push_str(&inline(text, bold, depth + 1));
                rest = &rest[len..];
                prev = Some(']');
                continue;
            }
        }
        let mut escaped = c;
        if c == '\\' {
            if let Some(n) = rest[1..].chars().next().filter(char::is_ascii_punctuation) {
                escaped = n;
                rest = &rest[1..];
            }
        }
        out.push_str(&prose_char(escaped, prev));
        prev = Some(escaped);
        rest = &rest[escaped.len_utf8()..];
    }
    out
}

/// Where the run of exactly `ticks` backticks that closes a code span is.
fn closing_ticks(s: &str, ticks: usize) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = s[from..].find('`') {
        let at = from + found;
        let run = s[at..].len() - s[at..].trim_start_matches('`').len();
        if run == ticks {
            return Some(at);
        }
        from = at + run;
    }
    None
}

/// A character of prose: a dash that starts a word (an option) is a
/// minus, one inside a word a hyphen.
fn prose_char(c: char, prev: Option<char>) -> String {
    match c {
        '\\' => "\\e".into(),
        '\'' => "\\(aq".into(),
        '`' => "\\(ga".into(),
        '^' => "\\(ha".into(),
        '~' => "\\(ti".into(),
        '-' if prev.is_none_or(|p| p.is_whitespace() || "(-/[".contains(p)) => "\\-".into(),
        c if c.is_ascii() => c.to_string(),
        c => special(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(text: &str) -> String {
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let mut r = Roff::new();
        r.blocks(&parse(&lines, 0), false);
        r.out
    }

    #[test]
    fn leading_dots_and_apostrophes_are_text() {
        assert_eq!(md(".SH oops\n'br oops"), "\\&.SH oops\n\\(aqbr oops\n");
        // Also where markup made them the line's first character.
        assert_eq!(md("[.x](y) and"), "\\&.x and\n");
        assert_eq!(md("…and"), "\\&...and\n");
    }

    #[test]
    fn backslashes_are_escaped() {
        assert_eq!(md("a \\ b"), "a \\e b\n");
        assert_eq!(md("`\\xNN`"), "\\fB\\exNN\\fR\n");
        // A markdown escape is the character itself.
        assert_eq!(md("\\*not bold\\*"), "*not bold*\n");
    }

    #[test]
    fn code_blocks_are_kept_as_they_are() {
        let roff = md("text\n\n```\n$ itersnap -o json | jq '.x'\n.hidden\n\n  \\d\n```\nafter");
        assert_eq!(
            roff,
            "text\n.PP\n.RS 4\n.nf\n$ itersnap \\-o json | jq \\(aq.x\\(aq\n\\&.hidden\n\\&\n  \\ed\n.fi\n.RE\n.PP\nafter\n"
        );
        // An unclosed fence runs to the end; nothing is lost or panics.
        assert!(md("```\nx").contains(".nf\nx\n.fi"));
        // Over MAX_CODE_LINES, a block is left out.
        let long = format!("```\n{}```\n", "line\n".repeat(MAX_CODE_LINES + 1));
        assert_eq!(md(&long), "");
    }

    #[test]
    fn inline_markup() {
        assert_eq!(
            md("run `--pid PID`, **see [docs](x.md) `y`** -x a-b"),
            "run \\fB\\-\\-pid PID\\fR, \\fBsee docs \\fBy\\fB\\fR \\-x a-b\n"
        );
        // Unclosed markup is text.
        assert_eq!(md("a `b's"), "a \\(gab\\(aqs\n");
        assert_eq!(md("**a"), "**a\n");
        assert_eq!(md("[a](b"), "[a](b\n");
        assert_eq!(md("µs — ≤ ☃"), "\\(mcs \\(em \\(<= \\[u2603]\n");
    }

    #[test]
    fn lists_and_tables() {
        let roff = md("- one\n  more\n- two\n  - nested\n\n  after\n\n1. first\n");
        assert_eq!(
            roff,
            ".IP \\(bu 2\none\nmore\n.IP \\(bu 2\ntwo\n.RS\n.IP \\(bu 2\nnested\n.RE\n.IP\nafter\n.IP 1. 4\nfirst\n"
        );
        // Items that all start with a name and a colon are tagged.
        let roff = md("- `0`: done: all\n- `NO_COLOR`, `X`: y\n  - sub\n");
        assert_eq!(
            roff,
            ".TP\n\\fB\\fB0\\fB\\fR\ndone: all\n.TP\n\\fB\\fBNO_COLOR\\fB, \\fBX\\fB\\fR\ny\n.RS\n.IP \\(bu 2\nsub\n.RE\n"
        );
        assert!(md("- `0`: a\n- b\n").starts_with(".IP \\(bu 2\n"));
        let roff = md("| a | b |\n| --- | --- |\n| `x` | y \\| z |\n| | w |\n");
        assert_eq!(roff, ".TP\n\\fB\\fBx\\fB\\fR\ny | z\n.TP\n\\&\nw\n");
        let roff = md("| k | v | w |\n| --- | --- | --- |\n| 1 | 2 | 3 |\n");
        assert_eq!(roff, ".TP\n\\fB1\\fR\n\\fIv\\fR: 2\n.br\n\\fIw\\fR: 3\n");
    }

    #[test]
    fn headings_and_sections() {
        let text = "# T\nintro\n## A\na\n```\n## not a heading\n```\n### `--x` y\nb\n## B\nc\n";
        let (h, lines) = section_lines(text, Place::Named("A")).unwrap();
        assert_eq!(h.as_deref(), Some("A"));
        assert_eq!(lines.len(), 6);
        assert_eq!(section_lines(text, Place::Intro).unwrap().1, ["intro"]);
        assert!(section_lines(text, Place::Named("C")).is_none());
        assert!(md("### `--x` \"y\"").starts_with(".SS \"\\-\\-x \\(dqy\\(dq\"\n"));
    }

    #[test]
    fn summaries_keep_the_lead_and_two_sentences() {
        let s = lead_and_sentences("**Lead.** One (e.g. `a. b`). Two, i.e. more. Three.", 2);
        assert_eq!(s, "**Lead.** One (e.g. `a. b`). Two, i.e. more.");
        assert_eq!(lead_and_sentences("**L** One. Two ways:", 2), "**L** One.");
        assert_eq!(lead_and_sentences("No end", 2), "No end");
    }

    #[test]
    fn every_source_is_found_and_says_something() {
        for part in PAGE {
            for s in part.from {
                assert!(
                    section_lines(s.text, s.place).is_some(),
                    "{}: {:?} for {}",
                    s.file,
                    s.place,
                    part.title
                );
                assert!(
                    source_roff(s, false, true).lines().count() > 2,
                    "{} from {}",
                    part.title,
                    s.file
                );
            }
        }
        for s in [DESCRIPTION, DOCUMENTATION] {
            assert!(
                source_roff(&s, false, true).lines().count() > 2,
                "{:?}",
                s.place
            );
        }
    }

    #[test]
    fn arbitrary_text_never_panics() {
        let mut next = crate::xorshift(0x2545_f491_4f6c_dd1d);
        let pieces = [
            "`", "``", "**", "*", "[", "](", ")", "|", "\\", "- ", "1. ", "  ", "\n", "```", "# ",
            "## ", "x", "µ", ".", "'", "| --- |", "\t", "e.g.",
        ];
        for _ in 0..2_000 {
            let len = next() % 40;
            let text: String = (0..len)
                .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                .collect();
            let _ = md(&text);
            let _ = lead_and_sentences(&text, 2);
            let _ = plain(&text);
        }
    }
}
