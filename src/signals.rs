//! Signal names and numbers as `kill -l` knows them on Linux.

/// Standard signals; real-time ones are RTMIN+n / RTMAX-n.
const NAMES_LIST: &[(&str, i32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("IOT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("POLL", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// Signal names as `kill -l` prints them with their SIG prefix, for
/// completion.
pub fn names() -> &'static [&'static str] {
    static NAMES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        NAMES_LIST
            .iter()
            .map(|(n, _)| &*Box::leak(format!("SIG{n}").into_boxed_str()))
            .chain(["SIGRTMIN", "SIGRTMAX"])
            .collect()
    })
}

/// The C library's real-time range (glibc reserves the kernel's first two).
fn rt_range() -> (i32, i32) {
    (libc::SIGRTMIN(), libc::SIGRTMAX())
}

/// `SIGUSR1`, `USR1`, `usr1`, `10`, `SIGRTMIN+2`, `RTMAX-1` → number.
pub fn parse(s: &str) -> Result<i32, String> {
    let bad = || format!("unknown signal '{s}' (try a name like SIGUSR1 or a number 1-64)");
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(&(_, n)) = NAMES_LIST.iter().find(|(n, _)| *n == name) {
        return Ok(n);
    }
    let (rtmin, rtmax) = rt_range();
    let rt = |base: i32, rest: &str, sign: i32| -> Option<i32> {
        let off = if rest.is_empty() {
            0
        } else {
            rest.parse::<i32>().ok()?
        };
        let n = base + sign * off;
        (rtmin..=rtmax).contains(&n).then_some(n)
    };
    let parsed = if let Some(rest) = name.strip_prefix("RTMIN") {
        rest.strip_prefix('+')
            .or(rest.is_empty().then_some(""))
            .and_then(|r| rt(rtmin, r, 1))
    } else if let Some(rest) = name.strip_prefix("RTMAX") {
        rest.strip_prefix('-')
            .or(rest.is_empty().then_some(""))
            .and_then(|r| rt(rtmax, r, -1))
    } else {
        None
    };
    parsed.ok_or_else(bad)
}

/// A siginfo's si_code by name, as sigaction(2) names them: the generic
/// codes for any signal (SI_USER from kill(), SI_TKILL from tgkill(),
/// SI_KERNEL), else the signal's own (SEGV_MAPERR, CLD_EXITED, ...).
pub fn code_name(signal: i32, code: i32) -> String {
    let generic = match code {
        0 => Some("SI_USER"),
        0x80 => Some("SI_KERNEL"),
        -1 => Some("SI_QUEUE"),
        -2 => Some("SI_TIMER"),
        -3 => Some("SI_MESGQ"),
        -4 => Some("SI_ASYNCIO"),
        -5 => Some("SI_SIGIO"),
        -6 => Some("SI_TKILL"),
        -7 => Some("SI_DETHREAD"),
        -60 => Some("SI_ASYNCNL"),
        _ => None,
    };
    let own: &[&str] = match signal {
        4 => &[
            "ILL_ILLOPC",
            "ILL_ILLOPN",
            "ILL_ILLADR",
            "ILL_ILLTRP",
            "ILL_PRVOPC",
            "ILL_PRVREG",
            "ILL_COPROC",
            "ILL_BADSTK",
        ],
        5 => &[
            "TRAP_BRKPT",
            "TRAP_TRACE",
            "TRAP_BRANCH",
            "TRAP_HWBKPT",
            "TRAP_UNK",
        ],
        7 => &[
            "BUS_ADRALN",
            "BUS_ADRERR",
            "BUS_OBJERR",
            "BUS_MCEERR_AR",
            "BUS_MCEERR_AO",
        ],
        8 => &[
            "FPE_INTDIV",
            "FPE_INTOVF",
            "FPE_FLTDIV",
            "FPE_FLTOVF",
            "FPE_FLTUND",
            "FPE_FLTRES",
            "FPE_FLTINV",
            "FPE_FLTSUB",
        ],
        11 => &[
            "SEGV_MAPERR",
            "SEGV_ACCERR",
            "SEGV_BNDERR",
            "SEGV_PKUERR",
            "SEGV_ACCADI",
            "SEGV_ADIDERR",
            "SEGV_ADIPERR",
            "SEGV_MTEAERR",
            "SEGV_MTESERR",
            "SEGV_CPERR",
        ],
        17 => &[
            "CLD_EXITED",
            "CLD_KILLED",
            "CLD_DUMPED",
            "CLD_TRAPPED",
            "CLD_STOPPED",
            "CLD_CONTINUED",
        ],
        29 => &[
            "POLL_IN", "POLL_OUT", "POLL_MSG", "POLL_ERR", "POLL_PRI", "POLL_HUP",
        ],
        31 => &["SYS_SECCOMP", "SYS_USER_DISPATCH"],
        _ => &[],
    };
    match generic {
        Some(name) => name.to_string(),
        None => usize::try_from(code)
            .ok()
            .and_then(|c| own.get(c.wrapping_sub(1)))
            .map_or_else(|| format!("code {code}"), |n| n.to_string()),
    }
}

/// 10 → "SIGUSR1"; real-time signals as SIGRTMIN+n.
pub fn name(n: i32) -> String {
    if let Some((name, _)) = NAMES_LIST.iter().find(|(_, v)| *v == n) {
        return format!("SIG{name}");
    }
    let (rtmin, rtmax) = rt_range();
    if (rtmin..=rtmax).contains(&n) {
        return if n == rtmin {
            "SIGRTMIN".into()
        } else {
            format!("SIGRTMIN+{}", n - rtmin)
        };
    }
    format!("signal {n}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        for s in ["SIGUSR1", "USR1", "usr1", "10", "sigusr1"] {
            assert_eq!(parse(s), Ok(10), "{s}");
        }
        assert_eq!(parse("TERM"), Ok(15));
        assert_eq!(parse("SIGRTMIN+2"), Ok(libc::SIGRTMIN() + 2));
        assert_eq!(parse("RTMAX"), Ok(libc::SIGRTMAX()));
        for bad in ["0", "65", "SIGFOO", "", "RTMIN+99", "RTMINX"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(name(10), "SIGUSR1");
        assert_eq!(name(libc::SIGRTMIN() + 1), "SIGRTMIN+1");
    }
}
