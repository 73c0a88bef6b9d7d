//! The hostile-input corpus (issue 8): what a hostile or careless user feeds `vtpu`,
//! kept in `testdata/hostile/<class>/`, each case run through the real binary.
//!
//! A class directory holds the case files and `cases.tsv`: one case per line, `exit
//! code <TAB> arguments <TAB> text the error must contain`, arguments split at spaces,
//! with `{dir}` (the class directory), `{root}` (`testdata/hostile`) and `{tmp}` (a
//! fresh temp directory). Binary cases (`.vsiw`, saved spaces) are generated from the
//! recipes below: `VTPU_BLESS=1 cargo test --test hostile` writes them; a normal run
//! checks the committed files still equal what the recipes make (so they follow format
//! changes). Cases that cannot be files (FIFOs, devices, 10 MB tokens, sparse files)
//! are built here at run time.
//!
//! Every case must: exit with its code (1 for an error, 2 for a usage error) within
//! 20 s under an address-space limit (6 GB unless its line says otherwise; an abort on
//! allocation failure is exit 134, not 1); name the expected cause; never panic; print an error of at most 4 KB (long
//! tokens are quoted by a prefix); and print no cause twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vtpu_isa::encode::{seal, HEADER_BYTES, PAGE_FIXED_BYTES, STREAM_HEADER_BYTES};
use vtpu_phext::{Coord, DType, Layout, PageKind, PhextSpace};

const TIME_LIMIT: Duration = Duration::from_secs(20);
/// Address-space limit for every case (KiB, for `ulimit -v`).
const MEMORY_LIMIT_KB: u64 = 6_000_000;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/hostile")
}

fn bless() -> bool {
    std::env::var_os("VTPU_BLESS").is_some()
}

struct Case {
    class: String,
    /// Where it came from, for failure messages.
    origin: String,
    exit: i32,
    args: Vec<String>,
    expect: String,
    /// `ulimit -v` for the case, KiB.
    memory_kb: u64,
}

/// Run `vtpu args` under the time and memory limits: (exit code, stderr).
fn run_vtpu(args: &[String], memory_kb: u64) -> Result<(i32, String), String> {
    // `ulimit -v` in a shell that then execs vtpu: the limit applies to vtpu only.
    let script = format!("ulimit -v {memory_kb}; exec \"$0\" \"$@\"");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_vtpu"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut s);
        s
    });
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            break st;
        }
        if t0.elapsed() > TIME_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("still running after {TIME_LIMIT:?}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let err = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
    Ok((status.code().unwrap_or(-1), err))
}

/// Why a case failed, if it did.
fn judge(c: &Case) -> Option<String> {
    let (code, err) = match run_vtpu(&c.args, c.memory_kb) {
        Ok(r) => r,
        Err(e) => return Some(e),
    };
    if err.contains("panicked") {
        return Some(format!("panicked:\n{err}"));
    }
    if code != c.exit {
        return Some(format!("exit {code}, expected {}:\n{err}", c.exit));
    }
    if !err.contains(&c.expect) {
        return Some(format!("expected {:?} in:\n{err}", c.expect));
    }
    if err.len() > 4096 {
        return Some(format!("{} bytes of error output", err.len()));
    }
    // Each cause once: an OS error's text never appears twice.
    if let Some(at) = err.find("(os error") {
        let tail = &err[at..];
        let end = tail.find(')').map_or(tail.len(), |i| i + 1);
        if err.matches(&tail[..end]).count() > 1 {
            return Some(format!("a cause printed twice:\n{err}"));
        }
    }
    None
}

fn expand(arg: &str, dir: &Path, tmp: &Path) -> String {
    arg.replace("{dir}", &dir.display().to_string())
        .replace("{root}", &root().display().to_string())
        .replace("{tmp}", &tmp.display().to_string())
}

/// Every `cases.tsv` case of every class. The temp dirs live as long as the returned
/// guard.
fn file_cases(tmp_base: &Path) -> Vec<Case> {
    let mut out = Vec::new();
    let mut classes: Vec<PathBuf> = std::fs::read_dir(root())
        .expect("testdata/hostile")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("cases.tsv").is_file())
        .collect();
    classes.sort();
    for dir in classes {
        let class = dir.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(dir.join("cases.tsv")).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let cols: Vec<&str> = line.split('\t').collect();
            assert!(
                cols.len() == 3 || cols.len() == 4,
                "{class}/cases.tsv:{}: exit, args, expect[, ulimit -v KiB]",
                n + 1
            );
            let tmp = tmp_base.join(format!("{class}-{}", n + 1));
            std::fs::create_dir_all(&tmp).unwrap();
            out.push(Case {
                origin: format!("{class}/cases.tsv:{}", n + 1),
                class: class.clone(),
                exit: cols[0].parse().expect("exit code"),
                args: cols[1].split(' ').map(|a| expand(a, &dir, &tmp)).collect(),
                expect: cols[2].to_string(),
                memory_kb: cols
                    .get(3)
                    .map_or(MEMORY_LIMIT_KB, |v| v.parse().expect("KiB")),
            });
        }
    }
    out
}

fn case(class: &str, origin: &str, exit: i32, args: &[&str], expect: &str) -> Case {
    Case {
        class: class.into(),
        origin: origin.into(),
        exit,
        args: args.iter().map(|s| s.to_string()).collect(),
        expect: expect.into(),
        memory_kb: MEMORY_LIMIT_KB,
    }
}

fn mkfifo(p: &Path) {
    let ok = Command::new("mkfifo")
        .arg(p)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "mkfifo {}", p.display());
}

/// Cases that cannot be committed files: built in `tmp` now.
fn special_cases(tmp: &Path) -> Vec<Case> {
    let s = |p: &Path| p.display().to_string();
    let ok = s(&root().join("ok.vasm"));
    let mut v = Vec::new();
    // A saved space to damage.
    let base = tmp.join("base");
    std::fs::create_dir_all(&base).unwrap();
    let m = base.join("s.phext");
    let sidecar = base_space().save(&m).unwrap().sidecar.unwrap();
    // Sidecar: a FIFO, a directory, a device.
    for (name, make, expect) in [
        ("fifo", 0, "is a FIFO, not a regular file"),
        ("dir", 1, "is a directory, not a regular file"),
        ("device", 2, "is a character device, not a regular file"),
    ] {
        let d = tmp.join(format!("sidecar-{name}"));
        std::fs::create_dir_all(&d).unwrap();
        let dm = d.join("s.phext");
        std::fs::copy(&m, &dm).unwrap();
        let ds = d.join(sidecar.file_name().unwrap());
        match make {
            0 => mkfifo(&ds),
            1 => std::fs::create_dir(&ds).unwrap(),
            _ => std::os::unix::fs::symlink("/dev/zero", &ds).unwrap(),
        }
        v.push(case(
            "sidecar",
            &format!("special: sidecar {name}"),
            1,
            &["pages", &s(&dm)],
            expect,
        ));
        v.push(case(
            "sidecar",
            &format!("special: sidecar {name} via run --load"),
            1,
            &["run", &ok, "--load", &s(&dm)],
            expect,
        ));
    }
    // Manifest: a FIFO, a directory, a sparse file claiming 2 GB.
    let fifo = tmp.join("fifo.phext");
    mkfifo(&fifo);
    v.push(case(
        "manifest",
        "special: manifest FIFO",
        1,
        &["pages", &s(&fifo)],
        "is a FIFO",
    ));
    let dirm = tmp.join("dir.phext");
    std::fs::create_dir(&dirm).unwrap();
    v.push(case(
        "manifest",
        "special: manifest directory",
        1,
        &["pages", &s(&dirm)],
        "is a directory",
    ));
    let sparse = tmp.join("sparse.phext");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(vtpu_phext::MAX_MANIFEST_BYTES + 1)
        .unwrap();
    v.push(case(
        "manifest",
        "special: sparse 1 GiB manifest",
        1,
        &["pages", &s(&sparse)],
        "more than the",
    ));
    // Programs: a FIFO with no writer would block: reading happens only if asked, so
    // the directory and device cases stand for it; a 10 MB token; a 100 000-char --show.
    let long = tmp.join("long.vasm");
    std::fs::write(&long, format!("DLI {}, 1\n", "x".repeat(10 << 20))).unwrap();
    v.push(case(
        "vasm",
        "special: 10 MB token",
        1,
        &["run", &s(&long)],
        "(10485760 characters)",
    ));
    let long_label = tmp.join("long_label.vasm");
    std::fs::write(&long_label, format!("CJMP {}\n", "L".repeat(1 << 20))).unwrap();
    v.push(case(
        "vasm",
        "special: 1 MB undefined label",
        1,
        &["run", &s(&long_label)],
        "(1048576 characters)",
    ));
    let show = "1".repeat(100_000);
    v.push(case(
        "coord",
        "special: 100 000-char --show",
        1,
        &["run", &ok, "--show", &show],
        "(100000 characters)",
    ));
    let sparse_prog = tmp.join("sparse.vsiw");
    std::fs::File::create(&sparse_prog)
        .unwrap()
        .set_len(1 << 31)
        .unwrap();
    v.push(case(
        "vsiw",
        "special: sparse 2 GiB program",
        1,
        &["run", &s(&sparse_prog)],
        "more than the 268435456-byte limit",
    ));
    v
}

// ------------------------------------------------------------------ recipes

fn base_space() -> PhextSpace {
    let s = PhextSpace::new(Layout::ZOrder);
    let c = |scroll| Coord::new([1, 1, 1, 1, 1, 1, 1, 1, scroll]).unwrap();
    s.insert_f32(c(1), [1, 4], &[1.0, 2.0, 3.0, 4.0], PageKind::Owned)
        .unwrap();
    s.insert_f32(c(2), [1, 4], &[0.0; 4], PageKind::Owned)
        .unwrap();
    s.insert_bytes(c(3), DType::I8, [2, 8], &[7; 16], true, PageKind::Owned)
        .unwrap();
    s
}

fn ok_program() -> Vec<u8> {
    let text = std::fs::read_to_string(root().join("ok.vasm")).unwrap();
    vtpu_isa::encode_program(&vtpu_isa::assemble(&text).unwrap())
}

/// The `.vsiw` cases: (file, bytes, expected error).
fn vsiw_recipes() -> Vec<(String, Vec<u8>, String)> {
    let good = ok_program();
    // ok.vasm: 2 pages (the first with 4 init values), 1 stream of 6 words.
    let page0 = HEADER_BYTES;
    let page1 = page0 + PAGE_FIXED_BYTES + 8 + 16;
    let stream = page1 + PAGE_FIXED_BYTES;
    let word0 = stream + STREAM_HEADER_BYTES;
    let mut out = Vec::new();
    let mut add = |name: &str, edit: &dyn Fn(&mut Vec<u8>), reseal: bool, expect: &str| {
        let mut b = good.clone();
        edit(&mut b);
        if reseal {
            seal(&mut b);
        }
        out.push((format!("{name}.vsiw"), b, expect.to_string()));
    };
    fn put(at: usize, v: &[u8]) -> impl Fn(&mut Vec<u8>) + '_ {
        move |b: &mut Vec<u8>| b[at..at + v.len()].copy_from_slice(v)
    }
    add(
        "flipped_word_bit",
        &|b| {
            let n = b.len();
            b[n - 1] ^= 1
        },
        false,
        "the file is damaged",
    );
    add(
        "flipped_page_value",
        &|b| b[page0 + PAGE_FIXED_BYTES + 8] ^= 0x40,
        false,
        "the file is damaged",
    );
    add(
        "flipped_checksum",
        &|b| b[16] ^= 1,
        false,
        "the file is damaged",
    );
    add(
        "flipped_length",
        &|b| b[8] ^= 1,
        false,
        "truncated or has bytes appended",
    );
    add(
        "truncated",
        &|b| b.truncate(b.len() - 10),
        false,
        "truncated or has bytes appended",
    );
    add(
        "appended_word",
        &|b| b.extend([0u8; 72]),
        false,
        "truncated or has bytes appended",
    );
    add(
        "magic_only",
        &|b| b.truncate(4),
        false,
        "the format version",
    );
    add(
        "version_1",
        &put(4, &[1, 0]),
        false,
        "rebuild it from its source with `vtpu asm SOURCE.vasm`",
    );
    add(
        "version_9",
        &put(4, &[9, 0]),
        false,
        "written by a newer vtpu",
    );
    add("flags", &put(6, &[1, 0]), true, "header flags 0");
    add(
        "page_count_max",
        &put(24, &u64::MAX.to_le_bytes()),
        true,
        "a page count of at most",
    );
    add(
        "stream_count_66",
        &put(32, &66u64.to_le_bytes()),
        true,
        "a stream count of at most",
    );
    add(
        "page_coord_key_bad",
        &put(page0, &[0xff; 16]),
        true,
        "a packed phext coordinate",
    );
    add(
        "page_dtype_99",
        &put(page0 + 16, &[99]),
        true,
        "a known dtype code",
    );
    add(
        "page_kind_7",
        &put(page0 + 17, &[7]),
        true,
        "a page kind 0 (owned)",
    );
    add(
        "page_rows_0",
        &put(page0 + 20, &0u32.to_le_bytes()),
        true,
        "a page shape within the limits",
    );
    add(
        "page_65536x65536",
        &|b| {
            b[page0 + 20..page0 + 24].copy_from_slice(&65536u32.to_le_bytes());
            b[page0 + 24..page0 + 28].copy_from_slice(&65536u32.to_le_bytes())
        },
        true,
        "4294967296 elements, more than the limit",
    );
    add(
        "page_init_count_max",
        &put(page0 + PAGE_FIXED_BYTES, &u64::MAX.to_le_bytes()),
        true,
        "an init value count of at most",
    );
    add(
        "stream_sentron_u32_max",
        &put(stream, &u64::from(u32::MAX).to_le_bytes()),
        true,
        "a sentron id 0..=63",
    );
    add(
        "stream_sentron_64",
        &put(stream, &64u64.to_le_bytes()),
        true,
        "a sentron id 0..=63",
    );
    add(
        "stream_word_count_max",
        &put(stream + 8, &u64::MAX.to_le_bytes()),
        true,
        "a word count of at most",
    );
    add(
        "unknown_opcode",
        &put(word0, &[0xff, 0x0f]),
        true,
        "a known opcode",
    );
    add(
        "op_in_wrong_slot",
        &put(word0, &[0x01, 0x02]),
        true,
        "in the D slot",
    );
    add(
        "reserved_byte",
        &put(word0 + 6, &[1]),
        true,
        "0 in a reserved byte",
    );
    add(
        "noncanonical_imm",
        &put(word0 + 8 + 15, &[0x80]),
        true,
        "canonical form",
    );
    add(
        "trailing_after_streams",
        &|b| b.extend([0u8; 5]),
        true,
        "end of input after the last stream",
    );
    out
}

/// Manifest cases: (file, bytes, expected error); all name the base sidecar.
fn manifest_recipes(base_manifest: &str, sidecar: &str) -> Vec<(String, Vec<u8>, String)> {
    let scrolls = |t: &str| -> BTreeMap<Coord, String> {
        libphext::phext::explode(t)
            .into_iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(c, s)| (Coord::from_libphext(&c, 999).unwrap(), s))
            .collect()
    };
    let implode = |m: &BTreeMap<Coord, String>| {
        libphext::phext::implode(
            m.iter()
                .map(|(c, s)| (c.to_libphext(), s.clone()))
                .collect(),
        )
    };
    let base = scrolls(base_manifest);
    let first = *base.keys().next().unwrap();
    let edit_first = |f: &dyn Fn(&str) -> String| {
        let mut m = base.clone();
        let s = m[&first].clone();
        m.insert(first, f(&s));
        implode(&m)
    };
    let set = |key: &'static str, value: &'static str| {
        move |s: &str| {
            s.lines()
                .map(|l| {
                    if l.starts_with(&format!("{key}=")) {
                        format!("{key}={value}")
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
        }
    };
    let mut out: Vec<(String, Vec<u8>, String)> = Vec::new();
    let mut add = |name: &str, text: Vec<u8>, expect: &str| {
        out.push((format!("{name}.phext"), text, expect.to_string()))
    };
    add("zero_bytes", Vec::new(), "is empty (0 bytes)");
    add(
        "delimiters_only",
        b"\x17\x18\x17".to_vec(),
        "holds no page scroll and no vtpu-empty-space marker",
    );
    add("blank_lines", b"\n\n".to_vec(), "is not key=value");
    add("not_utf8", vec![0xff, 0xfe, b'x'], "is not UTF-8 text");
    add(
        "unknown_key",
        edit_first(&|s| format!("{s}\ntitle=notes")).into_bytes(),
        "unknown key \"title\"",
    );
    add(
        "missing_dtype",
        edit_first(&|s| {
            s.lines()
                .filter(|l| !l.starts_with("dtype="))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .into_bytes(),
        "missing key dtype",
    );
    add(
        "duplicate_key",
        edit_first(&|s| format!("{s}\nlength=16")).into_bytes(),
        "appears twice",
    );
    add(
        "dtype_unknown",
        edit_first(&set("dtype", "f33")).into_bytes(),
        "unknown dtype",
    );
    add(
        "shape_not_rxc",
        edit_first(&set("shape", "16")).into_bytes(),
        "is not ROWSxCOLS",
    );
    add(
        "shape_overflow",
        edit_first(&set("shape", "99999999999x99999999999")).into_bytes(),
        "overflows",
    );
    add(
        "length_mismatch",
        edit_first(&set("length", "17")).into_bytes(),
        "does not match",
    );
    add(
        "offset_negative",
        edit_first(&set("offset", "-64")).into_bytes(),
        "offset \"-64\" is not a decimal number",
    );
    add(
        "offset_huge_digits",
        edit_first(&|s| {
            set("offset", "0")(s).replace("offset=0", &format!("offset={}", "9".repeat(5000)))
        })
        .into_bytes(),
        "...\" is not a decimal number",
    );
    add(
        "offset_misaligned",
        edit_first(&set("offset", "65")).into_bytes(),
        "not 64-byte aligned",
    );
    add(
        "offset_beyond_sidecar",
        edit_first(&set("offset", "1048576")).into_bytes(),
        "lies outside the",
    );
    add(
        "kind_scratch",
        edit_first(&set("kind", "scratch")).into_bytes(),
        "scratch pages are never saved",
    );
    add(
        "kind_mapped_writable",
        edit_first(&|s| set("read_only", "false")(&set("kind", "mapped")(s))).into_bytes(),
        "mapped pages are read-only",
    );
    add(
        "xxh3_not_hex",
        edit_first(&set("xxh3", "0X0123456789abcd")).into_bytes(),
        "is not 16 lower-case hex digits",
    );
    add(
        "xxh3_wrong",
        edit_first(&set("xxh3", "0123456789abcdef")).into_bytes(),
        "checksum mismatch",
    );
    add(
        "page_version_2",
        edit_first(&set("vtpu-page", "2")).into_bytes(),
        "unsupported page format version",
    );
    // Every scroll names the same sidecar (one name per manifest is checked first).
    let renamed = |to: &str| base_manifest.replace(sidecar, to).into_bytes();
    add(
        "sidecar_path",
        renamed("../etc/passwd.0123456789abcdef.bin"),
        "not a plain file name",
    );
    add(
        "sidecar_missing",
        renamed("gone.phext.0123456789abcdef.bin"),
        "is missing",
    );
    add(
        "sidecar_no_id",
        renamed("gone.bin"),
        "not a plain file name",
    );
    {
        let mut m = base.clone();
        let c2 = Coord::new([1, 1, 1, 1, 1, 1, 1, 1, 9]).unwrap();
        let s = m[&first].replace(sidecar, "other.phext.0123456789abcdef.bin");
        m.insert(c2, s);
        add(
            "mixed_sidecars",
            implode(&m).into_bytes(),
            "but earlier scrolls name",
        );
    }
    {
        let mut m = base.clone();
        let c2 = Coord::new([1, 1, 1, 1, 1, 1, 1, 1, 9]).unwrap();
        m.insert(c2, m[&first].clone());
        add("overlapping_pages", implode(&m).into_bytes(), "overlap");
    }
    {
        let mut m = base.clone();
        m.insert(
            Coord::new([2, 1, 1, 1, 1, 1, 1, 1, 1]).unwrap(),
            "vtpu-empty-space=1\nlayout=zorder\npart_limit=999".into(),
        );
        add(
            "marker_and_pages",
            implode(&m).into_bytes(),
            "an empty-space marker in a manifest that also lists pages",
        );
    }
    add(
        "marker_version_9",
        b"vtpu-empty-space=9\nlayout=zorder\npart_limit=999".to_vec(),
        "unsupported version",
    );
    add(
        "marker_layout_spiral",
        b"vtpu-empty-space=1\nlayout=spiral\npart_limit=999".to_vec(),
        "unknown layout",
    );
    add(
        "marker_part_limit_0",
        b"vtpu-empty-space=1\nlayout=zorder\npart_limit=0".to_vec(),
        "out of range",
    );
    {
        let mut m = BTreeMap::new();
        let c = Coord::new_with_limit([1, 1, 1, 1, 1, 1, 1, 1, 1000], 16383).unwrap();
        m.insert(c, base[&first].clone());
        add(
            "coord_part_1000",
            implode(&m).into_bytes(),
            "must be 1..=999",
        );
    }
    out
}

fn header_sum(b: &mut [u8]) {
    let s = xxhash_rust::xxh3::xxh3_64(&b[..56]);
    b[56..64].copy_from_slice(&s.to_le_bytes());
}

/// Sidecar cases: (manifest file, manifest text, sidecar file, sidecar bytes, expected).
fn sidecar_recipes(
    base_manifest: &str,
    sidecar_name: &str,
    sidecar: &[u8],
) -> Vec<(String, String, String, Vec<u8>, String)> {
    let id = &sidecar_name[sidecar_name.len() - 20..sidecar_name.len() - 4];
    let mut out = Vec::new();
    let mut add = |name: &str, edit: &dyn Fn(&mut Vec<u8>), fix_header: bool, expect: &str| {
        let sc_name = format!("{name}.phext.{id}.bin");
        let manifest = base_manifest.replace(sidecar_name, &sc_name);
        let mut b = sidecar.to_vec();
        edit(&mut b);
        if fix_header && b.len() >= 64 {
            header_sum(&mut b);
        }
        out.push((
            format!("{name}.phext"),
            manifest,
            sc_name,
            b,
            expect.to_string(),
        ));
    };
    add(
        "page_byte_flipped",
        &|b| b[64] ^= 0x55,
        false,
        "checksum mismatch: manifest says",
    );
    add(
        "header_byte_flipped",
        &|b| b[20] ^= 1,
        false,
        "header checksum mismatch",
    );
    add("bad_magic", &|b| b[0] = b'X', false, "bad magic");
    add(
        "shorter_than_header",
        &|b| b.truncate(10),
        false,
        "shorter than the 64-byte header",
    );
    add(
        "truncated",
        &|b| b.truncate(100),
        false,
        "truncated or damaged",
    );
    add(
        "trailing_bytes",
        &|b| b.extend([0u8; 64]),
        false,
        "trailing bytes",
    );
    add("version_2", &|b| b[8] = 2, true, "format version 2");
    add("header_len_65", &|b| b[12] = 65, true, "header length 65");
    add(
        "reserved_nonzero",
        &|b| b[50] = 1,
        true,
        "reserved header bytes",
    );
    add("layout_9", &|b| b[44] = 9, true, "unknown layout code 9");
    add(
        "part_limit_0",
        &|b| b[40..44].copy_from_slice(&0u32.to_le_bytes()),
        true,
        "part limit 0 is out of range",
    );
    add(
        "content_id_other",
        &|b| b[32] ^= 1,
        true,
        "does not match the id",
    );
    add(
        "page_count_other",
        &|b| b[24] = 9,
        true,
        "manifest has 3 pages but sidecar",
    );
    add(
        "total_len_huge",
        &|b| b[16..24].copy_from_slice(&u64::MAX.to_le_bytes()),
        true,
        "truncated or damaged",
    );
    out
}

/// Generate the binary cases into `dir` (a class layout: vsiw/, manifest/, sidecar/)
/// with their `cases.tsv`.
fn generate(dir: &Path) {
    let vsiw = dir.join("vsiw");
    std::fs::create_dir_all(&vsiw).unwrap();
    let mut tsv = vec![TSV_HEAD.to_string()];
    for (name, bytes, expect) in vsiw_recipes() {
        std::fs::write(vsiw.join(&name), bytes).unwrap();
        tsv.push(format!("1\trun {{dir}}/{name}\t{expect}"));
    }
    tsv.push("1\tdisasm {dir}/flipped_word_bit.vsiw\tthe file is damaged".into());
    tsv.push("1\tvalidate {dir}/stream_sentron_u32_max.vsiw\ta sentron id 0..=63".into());
    std::fs::write(vsiw.join("cases.tsv"), tsv.join("\n") + "\n").unwrap();

    let man = dir.join("manifest");
    std::fs::create_dir_all(&man).unwrap();
    let base_m = man.join("base.phext");
    let stats = base_space().save(&base_m).unwrap();
    let sc_path = stats.sidecar.unwrap();
    let sc_name = sc_path.file_name().unwrap().to_string_lossy().into_owned();
    let base_text = std::fs::read_to_string(&base_m).unwrap();
    let mut tsv = vec![TSV_HEAD.to_string()];
    for (name, bytes, expect) in manifest_recipes(&base_text, &sc_name) {
        std::fs::write(man.join(&name), bytes).unwrap();
        tsv.push(format!("1\tpages {{dir}}/{name}\t{expect}"));
    }
    tsv.push("1\trun {root}/ok.vasm --load {dir}/xxh3_wrong.phext\tchecksum mismatch".into());
    tsv.push(
        "1\trun {root}/ok.vasm --packed --load {dir}/zero_bytes.phext\tis empty (0 bytes)".into(),
    );
    std::fs::write(man.join("cases.tsv"), tsv.join("\n") + "\n").unwrap();

    let side = dir.join("sidecar");
    std::fs::create_dir_all(&side).unwrap();
    let sc_bytes = std::fs::read(&sc_path).unwrap();
    let mut tsv = vec![TSV_HEAD.to_string()];
    for (mname, mtext, sname, sbytes, expect) in sidecar_recipes(&base_text, &sc_name, &sc_bytes) {
        std::fs::write(side.join(&mname), mtext).unwrap();
        std::fs::write(side.join(&sname), sbytes).unwrap();
        tsv.push(format!("1\tpages {{dir}}/{mname}\t{expect}"));
    }
    std::fs::write(
        side.join("missing.phext"),
        base_text.replace(&sc_name, "missing.phext.0123456789abcdef.bin"),
    )
    .unwrap();
    tsv.push("1\tpages {dir}/missing.phext\tis missing (named by manifest".into());
    tsv.push("1\trun {root}/ok.vasm --load {dir}/page_byte_flipped.phext --save {tmp}/s.phext\tchecksum mismatch".into());
    std::fs::write(side.join("cases.tsv"), tsv.join("\n") + "\n").unwrap();
}

const TSV_HEAD: &str = "# exit\targs ({dir} = this directory, {root} = testdata/hostile, {tmp} = a fresh temp dir)\texpected in stderr";

/// Files of `dir` (relative names) and their bytes.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_file() {
            out.insert(
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            );
        }
    }
    out
}

#[test]
fn generated_cases_match_their_recipes() {
    if bless() {
        for class in ["vsiw", "manifest", "sidecar"] {
            let _ = std::fs::remove_dir_all(root().join(class));
        }
        generate(&root());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    generate(tmp.path());
    for class in ["vsiw", "manifest", "sidecar"] {
        let (want, have) = (tree(&tmp.path().join(class)), tree(&root().join(class)));
        let names = |t: &BTreeMap<String, Vec<u8>>| t.keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            names(&want),
            names(&have),
            "{class}: files differ; VTPU_BLESS=1 cargo test --test hostile regenerates them"
        );
        for (name, bytes) in &want {
            assert!(have[name] == *bytes, "{class}/{name} differs from its recipe; VTPU_BLESS=1 cargo test --test hostile regenerates it");
        }
    }
}

#[test]
fn hostile_corpus() {
    if bless() {
        return; // the files are being rewritten by the other test
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut cases = file_cases(tmp.path());
    cases.extend(special_cases(tmp.path()));
    let mut per_class: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    for c in &cases {
        let e = per_class.entry(c.class.clone()).or_default();
        e.0 += 1;
        match judge(c) {
            None => e.1 += 1,
            Some(why) => failures.push(format!(
                "{} (vtpu {}): {why}",
                c.origin,
                c.args.join(" ").chars().take(200).collect::<String>()
            )),
        }
    }
    // Fuzz findings kept as regression cases are replayed by the crates' fuzz_short
    // tests; they count toward the corpus here.
    for target in ["vsiw", "vasm", "manifest", "sidecar", "coord"] {
        let n = std::fs::read_dir(root().join("fuzz").join(target))
            .map(|r| {
                r.flatten()
                    .filter(|e| e.path().is_file() && e.file_name() != "README.md")
                    .count()
            })
            .unwrap_or(0);
        per_class.entry(format!("fuzz/{target}")).or_default().0 += n;
    }
    let total: usize = per_class.values().map(|v| v.0).sum();
    println!("hostile corpus: {total} cases");
    for (class, (n, passed)) in &per_class {
        println!("  {class:<14} {n:>4} cases, {passed:>4} passed here");
    }
    assert!(
        failures.is_empty(),
        "{} failing case(s):\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
