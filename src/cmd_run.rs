//! `vtpu run`, and the checks every command shares: argument parsers that refuse
//! counts of 0 and absurd sizes, bounded program reads, output paths checked before the
//! work, and error messages that quote a short prefix of a bad token and print each
//! cause once.
//!
//! Order of a run: every argument is checked first (so a typo in `--show` or an
//! unwritable `--report-json` cannot cost a finished run's `--save`), then the program
//! is read (bounded) and validated against the machine before any page is allocated,
//! then the run; afterwards `--save` is written first, then `--report-json`, then
//! `--show` and `--report` are printed. `--packed` honours every option the same way,
//! applied to the packed program's run.

use anyhow::{anyhow, bail, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use vtpu_isa::Program;
use vtpu_phext::{Coord, Layout, LoadMode, PhextSpace};
use vtpu_runtime::{ExecutorKind, MachineError, RunConfig, RunReport};

/// Most timed runs a command repeats (`--runs`): each keeps a few numbers, and more
/// than this is a typo, not a measurement.
pub const MAX_RUNS: usize = 100_000;

/// Most characters of a user's token an error message quotes.
const QUOTE_CHARS: usize = 40;

/// `text` quoted, cut to a short prefix when long (a 10 MB argument is named by its
/// start and length, not echoed).
pub fn short(text: &str) -> String {
    match text.char_indices().nth(QUOTE_CHARS) {
        Some((cut, _)) => format!(
            "{:?}... ({} characters)",
            &text[..cut],
            text.chars().count()
        ),
        None => format!("{text:?}"),
    }
}

/// `text` as is when short, else its first characters and its length, unquoted.
pub fn prefix(text: &str) -> String {
    match text.char_indices().nth(QUOTE_CHARS) {
        Some((cut, _)) => format!("{}... ({} characters)", &text[..cut], text.chars().count()),
        None => text.to_string(),
    }
}

/// `text` with every run of more than 200 non-space characters cut to its first
/// characters and its length (for messages that quote user input whole).
pub fn shorten_long_words(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(4096));
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if word.chars().count() > 200 {
            out.push_str(&prefix(word));
        } else {
            out.push_str(word);
        }
    }
    out
}

/// An error and its causes, each printed once: a cause whose text an outer message
/// already contains (`could not open X: No such file (os error 2)` over `No such file
/// (os error 2)`) is not repeated.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if out.contains(&c) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&c);
    }
    out
}

fn number<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.parse::<T>()
        .map_err(|_| format!("{} is not a whole number", short(s)))
}

/// `--sentrons`: 1..=64, checked while parsing (every command that takes it).
pub fn parse_sentrons(s: &str) -> Result<usize, String> {
    let n: usize = number(s)?;
    if !(1..=vtpu_isa::MAX_SENTRONS).contains(&n) {
        return Err(format!("must be 1..={}, got {n}", vtpu_isa::MAX_SENTRONS));
    }
    Ok(n)
}

/// A count that must be at least 1 (`--calls`, `--tokens`, ...).
pub fn parse_count(s: &str) -> Result<usize, String> {
    let n: usize = number(s)?;
    if n == 0 {
        return Err("must be at least 1 (0 would do nothing)".to_string());
    }
    Ok(n)
}

/// A u32 count that must be at least 1 (workload sizes).
pub fn parse_count_u32(s: &str) -> Result<u32, String> {
    let n: u32 = number(s)?;
    if n == 0 {
        return Err("must be at least 1".to_string());
    }
    Ok(n)
}

/// `--max-words`: at least 1.
pub fn parse_max_words(s: &str) -> Result<u64, String> {
    let n: u64 = number(s)?;
    if n == 0 {
        return Err("must be at least 1".to_string());
    }
    Ok(n)
}

/// `--mem-limit`: a byte count with an optional binary suffix (`512M`, `4G`, `4GiB`).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(split);
    let unit: u64 = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "{}: expected a number of bytes with an optional K, M, G or T",
                short(s)
            ))
        }
    };
    let n: u64 = number(digits)?;
    let bytes = n
        .checked_mul(unit)
        .ok_or_else(|| format!("{} bytes do not fit 64 bits", short(s)))?;
    if bytes == 0 {
        return Err("must be at least 1 byte".to_string());
    }
    Ok(bytes)
}

/// `--runs`: 1..=MAX_RUNS.
pub fn parse_runs(s: &str) -> Result<usize, String> {
    let n = parse_count(s)?;
    if n > MAX_RUNS {
        return Err(format!("must be at most {MAX_RUNS}, got {n}"));
    }
    Ok(n)
}

/// Read a whole input file of at most `max` bytes, with that bound whatever the file
/// is (`/dev/zero` is refused after `max + 1` bytes, not read until memory runs out).
pub fn read_bounded(path: &Path, max: u64, what: &str) -> Result<Vec<u8>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?;
    if meta.is_dir() {
        bail!("cannot read {}: it is a directory", path.display());
    }
    if meta.is_file() && meta.len() > max {
        bail!(
            "{}: {} bytes, more than the {max}-byte limit for {what}",
            path.display(),
            meta.len()
        );
    }
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() as u64 > max {
        bail!(
            "{}: more than the {max}-byte limit for {what} (not a program file?)",
            path.display()
        );
    }
    Ok(bytes)
}

/// Read a program: .vsiw files (by their magic) are decoded, anything else assembled.
/// At most `MAX_PROGRAM_BYTES` are read.
pub fn read_program(path: &Path) -> Result<Program> {
    let bytes = read_bounded(path, vtpu_isa::MAX_PROGRAM_BYTES, "a program")?;
    if bytes.starts_with(&vtpu_isa::encode::MAGIC) {
        return vtpu_isa::encode::decode_program(&bytes)
            .with_context(|| format!("{}: not a valid .vsiw program", path.display()));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow!("{}: not UTF-8 text and not a .vsiw binary", path.display()))?;
    vtpu_isa::asm::assemble_file(&path.display().to_string(), &text).map_err(|e| anyhow!("{e}"))
}

/// Is `output` the file `input` (same path, or the same file through another name)?
fn same_file(input: &Path, output: &Path) -> bool {
    if input == output {
        return true;
    }
    match (std::fs::canonicalize(input), std::fs::canonicalize(output)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Refuse to write `output` over `input` (`compile -o`, `asm -o`, `disasm -o`): the
/// source would be lost.
pub fn refuse_overwrite(input: &Path, output: &Path, flag: &str) -> Result<()> {
    if same_file(input, output) {
        bail!(
            "{flag} {} is the input file; refusing to overwrite it",
            output.display()
        );
    }
    Ok(())
}

/// Check before the work that a file can be created at `path`: its directory exists
/// and `path` is not a directory. (Permissions are found when writing.)
pub fn check_output_file(path: &Path, flag: &str) -> Result<()> {
    if path.as_os_str().is_empty() {
        bail!("{flag}: empty path");
    }
    if path.is_dir() {
        bail!("{flag} {}: is a directory", path.display());
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        bail!(
            "{flag} {}: directory {} does not exist",
            path.display(),
            dir.display()
        );
    }
    Ok(())
}

pub fn layout_of(l: crate::LayoutArg) -> Layout {
    match l {
        crate::LayoutArg::Zorder => Layout::ZOrder,
        crate::LayoutArg::Hilbert => Layout::Hilbert,
        crate::LayoutArg::Insertion => Layout::Insertion,
    }
}

pub fn exec_kind(e: crate::Exec) -> ExecutorKind {
    match e {
        crate::Exec::Fast => ExecutorKind::Fast,
        crate::Exec::Reference => ExecutorKind::Reference,
    }
}

/// Where a run's phext space comes from: a fresh space placed by `layout`, or a saved
/// one (`--load`) that gains the pages the program declares and it lacks.
#[derive(Clone, Debug)]
pub struct Setup {
    pub layout: Layout,
    pub load: Option<PathBuf>,
    /// The run's memory budget in bytes (the declared pages are checked against it
    /// before they are allocated).
    pub mem_limit: u64,
}

impl Setup {
    /// A space ready for `program` (called `name` in errors) on `sentrons` sentrons.
    /// The program is validated against the machine before any page is allocated (an
    /// oversized page or a bad sentron id costs nothing).
    pub fn space(&self, program: &Program, name: &str, sentrons: usize) -> Result<PhextSpace> {
        match &self.load {
            Some(m) => {
                let space = PhextSpace::load(m, LoadMode::Copy)
                    .with_context(|| format!("cannot load {}", m.display()))?;
                validate_for_run(program, name, sentrons, space.part_limit())?;
                vtpu_runtime::load_pages(program, &space)
                    .with_context(|| format!("{name} against {}", m.display()))?;
                Ok(space)
            }
            None => {
                validate_for_run(program, name, sentrons, vtpu_phext::DEFAULT_PART_LIMIT)?;
                // The arena is one allocation of every declared page: check it against
                // the memory budget before asking for it.
                let bytes: u64 = program
                    .pages
                    .iter()
                    .map(|p| vtpu_runtime::budget::page_bytes(p.dtype, p.shape[0], p.shape[1]))
                    .sum();
                if bytes > self.mem_limit {
                    bail!(
                        "{name}: its pages need {bytes} bytes, more than the memory budget of {} bytes (--mem-limit)",
                        self.mem_limit
                    );
                }
                vtpu_runtime::build_space(program, self.layout)
                    .with_context(|| format!("{name}: cannot place its pages"))
            }
        }
    }
}

/// The validation `vtpu_runtime::run` does, done before the space is built; errors
/// name the program (`name`).
pub fn validate_for_run(
    program: &Program,
    name: &str,
    sentrons: usize,
    part_limit: u32,
) -> Result<()> {
    let opts = vtpu_isa::validate::ValidateOptions {
        sentrons: Some(sentrons),
        part_limit,
    };
    if let Err(errs) = vtpu_isa::validate::validate(program, &opts) {
        let text: Vec<String> = errs.iter().map(|e| format!("  {e}")).collect();
        return Err(
            anyhow::Error::new(MachineError::Invalid(text.join("\n"))).context(name.to_string())
        );
    }
    Ok(())
}

/// The outputs a run was asked for, checked before the run.
struct Outputs {
    shows: Vec<Coord>,
    report: bool,
    report_json: Option<PathBuf>,
    save: Option<PathBuf>,
}

impl Outputs {
    fn check(a: &crate::RunArgs) -> Result<Outputs> {
        let shows = a
            .show
            .iter()
            .map(|c| Coord::parse(c).with_context(|| format!("--show {}", prefix(c))))
            .collect::<Result<Vec<_>>>()?;
        if let Some(p) = &a.report_json {
            check_output_file(p, "--report-json")?;
            refuse_overwrite(&a.program, p, "--report-json")?;
        }
        if let Some(m) = &a.save {
            check_output_file(m, "--save")?;
            refuse_overwrite(&a.program, m, "--save")?;
        }
        if let Some(m) = &a.load {
            if !m.is_file() {
                bail!("--load {}: no such manifest file", m.display());
            }
        }
        Ok(Outputs {
            shows,
            report: a.report,
            report_json: a.report_json.clone(),
            save: a.save.clone(),
        })
    }

    /// Save first (the most expensive thing to lose), then the JSON report, then print.
    fn finish(
        &self,
        space: &PhextSpace,
        json: impl FnOnce() -> serde_json::Value,
        report: impl FnOnce() -> String,
    ) -> Result<()> {
        if let Some(m) = &self.save {
            let stats = space
                .save(m)
                .with_context(|| format!("cannot save phext space to {}", m.display()))?;
            eprintln!(
                "saved phext space to {} ({} page(s), {} bytes)",
                m.display(),
                stats.pages,
                stats.page_bytes
            );
        }
        if let Some(path) = &self.report_json {
            let text = serde_json::to_string_pretty(&json())?;
            std::fs::write(path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        for &coord in &self.shows {
            match space.get(coord) {
                Some(p) => println!("{coord} = {}", page_values(&p)?),
                None => bail!("--show {coord}: no page at that coordinate"),
            }
        }
        if self.report {
            print!("{}", report());
        }
        Ok(())
    }
}

pub fn run(a: crate::RunArgs) -> Result<()> {
    let outputs = Outputs::check(&a)?;
    let program = read_program(&a.program)?;
    let sentrons = a.sentrons.unwrap_or_else(|| program.min_sentrons());
    let mem_limit = a
        .mem_limit
        .unwrap_or_else(vtpu_runtime::budget::default_limit);
    let setup = Setup {
        layout: layout_of(a.layout),
        load: a.load.clone(),
        mem_limit,
    };
    let cfg = RunConfig {
        sentrons,
        executor: exec_kind(a.executor),
        pin: !a.no_pin,
        word_limit: a.max_words.unwrap_or(u64::MAX),
        mem_limit: Some(mem_limit),
        // Nothing here reads the final registers: do not copy them.
        keep_states: false,
        ..RunConfig::default()
    };
    if a.packed {
        // Validate the input before compiling it: errors blame the program as given.
        let name = a.program.display().to_string();
        validate_for_run(&program, &name, sentrons, vtpu_phext::MAX_PART_LIMIT)?;
        let ba = crate::cmd_compile::run_packed(&program, &name, &setup, &cfg)?;
        let summary = ba.text.lines().last().unwrap_or_default().to_string();
        if !outputs.report {
            println!("{summary}");
        }
        let json = || {
            serde_json::json!({
                "before": vtpu_runtime::report::report_json(&ba.before),
                "after": vtpu_runtime::report::report_json(&ba.after),
            })
        };
        return outputs.finish(&ba.after_space, json, || ba.text.clone());
    }
    let space = setup.space(&program, &a.program.display().to_string(), sentrons)?;
    let report: RunReport = vtpu_runtime::run(&program, &space, &cfg)?;
    outputs.finish(
        &space,
        || vtpu_runtime::report::report_json(&report),
        || vtpu_runtime::report::format_report(&report),
    )
}

fn page_values(p: &vtpu_phext::Page) -> Result<String> {
    if p.dtype() != vtpu_phext::DType::F32 {
        return Ok(format!(
            "<{} page, {}x{}>",
            p.dtype().name(),
            p.shape()[0],
            p.shape()[1]
        ));
    }
    let mut v = vec![0f32; p.elems()];
    p.read_f32(0, &mut v)?;
    Ok(if v.len() == 1 {
        format!("{}", v[0])
    } else {
        format!("{v:?}")
    })
}
