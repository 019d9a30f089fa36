//! A worker's answer to our handshake, read without R's `unserialize()`: whoever connects to
//! the master's port first sends these bytes, so they are parsed here, as a pull parser for
//! R's serialization format restricted to the shape a worker sends -- the loop's `VALUE`
//! message, a list whose `value` is `list(pid, token)` (R/launchNodePSOCK.R).
//!
//! The parser is stateless: given the bytes read so far it says how many more it needs --
//! the next piece plus what the structure read so far proves must still follow it (the
//! other elements of an open list, at least 4 bytes each, ...), never more than the message
//! holds, so R reads exactly those and never a byte of what follows the message on the
//! node's stream -- or that the message is complete, or why it is refused.
//! Binary formats only (xdr and native, serialization versions 2 and 3); a message is at
//! most [`MAX_BYTES`], nests at most [`MAX_DEPTH`] deep and holds at most [`MAX_ITEMS`]
//! objects; any other object type (environments, closures, ALTREP, ...) is refused.

/// A worker's answer is a few hundred bytes; anything longer is no worker of ours.
pub const MAX_BYTES: usize = 4096;
const MAX_DEPTH: usize = 8;
const MAX_ITEMS: usize = 256;

/// What to do next with a connection's bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Read exactly this many more bytes, then ask again.
    Need(usize),
    /// A complete answer: the worker's PID and its token (None: not a string).
    Done { pid: i32, token: Option<String> },
    /// Not a worker's answer (why).
    Reject(String),
}

/// The next step for the bytes read so far on a new connection.
pub fn step(bytes: &[u8]) -> Step {
    let mut c = Cursor { buf: bytes, pos: 0, owed: 0, xdr: true, items: 0, symbols: Vec::new() };
    let value = match c.message() {
        Ok(v) => v,
        Err(Stop::More(n)) => return Step::Need(n),
        Err(Stop::Bad(why)) => return Step::Reject(why),
    };
    if c.pos != bytes.len() {
        return Step::Reject(format!("{} bytes after the end of the message", bytes.len() - c.pos));
    }
    answer(&value)
}

/// Why the parse stopped short of a value.
enum Stop {
    /// This many more bytes are needed.
    More(usize),
    Bad(String),
}

type Parse<T> = Result<T, Stop>;

/// The objects the answer may hold.
#[derive(Debug)]
enum Value {
    Null,
    Logical(Vec<i32>),
    Int(Vec<i32>),
    Real(Vec<f64>),
    Str(Vec<Option<String>>),
    /// A list and its names (empty without).
    List(Vec<Value>, Vec<Option<String>>),
    Symbol(String),
    /// A pairlist (attributes): tags and values.
    Pairs(Vec<(Option<String>, Value)>),
}

// R's type codes (serialize.c / Rinternals.h).
const SYMSXP: u32 = 1;
const LISTSXP: u32 = 2;
const CHARSXP: u32 = 9;
const LGLSXP: u32 = 10;
const INTSXP: u32 = 13;
const REALSXP: u32 = 14;
const STRSXP: u32 = 16;
const VECSXP: u32 = 19;
const REFSXP: u32 = 255;
const NILVALUE_SXP: u32 = 254;
const HAS_ATTR: u32 = 1 << 9;
const HAS_TAG: u32 = 1 << 10;

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Bytes the message must still hold after the piece being read (a lower bound): asked
    /// for together with it, so that a message takes few round trips through R.
    owed: usize,
    xdr: bool,
    items: usize,
    /// Symbols in the order read: a later reference (REFSXP) names one by its index.
    symbols: Vec<String>,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Parse<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= MAX_BYTES);
        let Some(end) = end else {
            return Err(Stop::Bad(format!("the message would be longer than {} bytes", MAX_BYTES)));
        };
        if end > self.buf.len() {
            return Err(Stop::More(end - self.buf.len() + self.owed.min(MAX_BYTES - end)));
        }
        let piece = &self.buf[self.pos..end];
        self.pos = end;
        Ok(piece)
    }

    /// Run `f` knowing that at least `extra` more bytes follow what it reads.
    fn owing<T>(&mut self, extra: usize, f: impl FnOnce(&mut Self) -> Parse<T>) -> Parse<T> {
        self.owed += extra;
        let result = f(self);
        self.owed -= extra;
        result
    }

    fn int(&mut self) -> Parse<i32> {
        let b: [u8; 4] = self.take(4)?.try_into().expect("4 bytes");
        Ok(if self.xdr { i32::from_be_bytes(b) } else { i32::from_ne_bytes(b) })
    }

    fn real(&mut self) -> Parse<f64> {
        let b: [u8; 8] = self.take(8)?.try_into().expect("8 bytes");
        Ok(if self.xdr { f64::from_be_bytes(b) } else { f64::from_ne_bytes(b) })
    }

    /// A vector length: refused at once if its data could not fit in the size cap (so a
    /// huge length never makes R wait for bytes).
    fn length(&mut self, size: usize) -> Parse<usize> {
        let n = self.int()?;
        if n < 0 {
            return Err(Stop::Bad("a long vector or a negative length".into()));
        }
        let n = n as usize;
        if n.saturating_mul(size) > MAX_BYTES - self.pos {
            return Err(Stop::Bad(format!("a vector of length {} (over the {} byte cap)", n, MAX_BYTES)));
        }
        Ok(n)
    }

    fn message(&mut self) -> Parse<Value> {
        // At least the rest of the header (12 bytes) and the value's flags (4) follow.
        self.xdr = match self.owing(16, |c| c.take(2))? {
            b"X\n" => true,
            b"B\n" => false,
            _ => return Err(Stop::Bad("not R's binary serialization (xdr or native)".into())),
        };
        let version = self.owing(12, Self::int)?;
        if version != 2 && version != 3 {
            return Err(Stop::Bad(format!("serialization version {} (2 or 3 expected)", version)));
        }
        let _writer = self.owing(8, Self::int)?;
        let _min_reader = self.owing(4 + if version == 3 { 4 } else { 0 }, Self::int)?;
        if version == 3 {
            let n = self.owing(4, Self::int)?;
            if !(0..=64).contains(&n) {
                return Err(Stop::Bad(format!("a native encoding name of {} bytes", n)));
            }
            self.owing(4, |c| c.take(n as usize))?;
        }
        self.item(0)
    }

    fn flags(&mut self) -> Parse<u32> {
        self.items += 1;
        if self.items > MAX_ITEMS {
            return Err(Stop::Bad(format!("more than {} objects", MAX_ITEMS)));
        }
        Ok(self.int()? as u32)
    }

    fn item(&mut self, depth: usize) -> Parse<Value> {
        let flags = self.flags()?;
        self.body(flags, depth)
    }

    fn body(&mut self, flags: u32, depth: usize) -> Parse<Value> {
        if depth > MAX_DEPTH {
            return Err(Stop::Bad(format!("objects nested more than {} deep", MAX_DEPTH)));
        }
        match flags & 0xff {
            NILVALUE_SXP => Ok(Value::Null),
            REFSXP => {
                let index = match flags >> 8 {
                    0 => self.int()?,
                    i => i as i32,
                };
                let name = usize::try_from(index).ok().and_then(|i| i.checked_sub(1)).and_then(|i| self.symbols.get(i));
                match name {
                    Some(name) => Ok(Value::Symbol(name.clone())),
                    None => Err(Stop::Bad(format!("a reference to object {} that was never sent", index))),
                }
            }
            SYMSXP => {
                let name = self.string()?.unwrap_or_default();
                self.symbols.push(name.clone());
                Ok(Value::Symbol(name))
            }
            LISTSXP => self.pairlist(flags, depth),
            LGLSXP | INTSXP | REALSXP | STRSXP | VECSXP => self.vector(flags, depth),
            other => Err(Stop::Bad(format!("an R object of type {}, which a worker's answer never holds", other))),
        }
    }

    /// A vector's length, data and attributes (its flags read).
    fn vector(&mut self, flags: u32, depth: usize) -> Parse<Value> {
        let kind = flags & 0xff;
        // Attributes follow a vector's data: a pairlist of at least 12 bytes.
        let after = if flags & HAS_ATTR != 0 { 12 } else { 0 };
        let value = self.owing(after, |c| {
            // The smallest element: 4 bytes (an item's flags, an integer), 8 for a double or a
            // string (flags and length).
            let size = match kind {
                REALSXP | STRSXP => 8,
                _ => 4,
            };
            let n = c.length(size)?;
            // Element i is read knowing that the others after it follow.
            let rest = |i: usize| size * (n - 1 - i);
            Ok(match kind {
                LGLSXP => Value::Logical((0..n).map(|i| c.owing(rest(i), Self::int)).collect::<Parse<_>>()?),
                INTSXP => Value::Int((0..n).map(|i| c.owing(rest(i), Self::int)).collect::<Parse<_>>()?),
                REALSXP => Value::Real((0..n).map(|i| c.owing(rest(i), Self::real)).collect::<Parse<_>>()?),
                STRSXP => Value::Str((0..n).map(|i| c.owing(rest(i), Self::string)).collect::<Parse<_>>()?),
                _ => Value::List((0..n).map(|i| c.owing(rest(i), |c| c.item(depth + 1))).collect::<Parse<_>>()?, Vec::new()),
            })
        })?;
        if after == 0 {
            return Ok(value);
        }
        let Value::Pairs(attributes) = self.item(depth + 1)? else {
            return Err(Stop::Bad("attributes that are not a pairlist".into()));
        };
        Ok(match value {
            Value::List(items, _) => {
                let names = attributes.into_iter().find(|(tag, _)| tag.as_deref() == Some("names")).and_then(|(_, v)| match v {
                    Value::Str(names) => Some(names),
                    _ => None,
                });
                Value::List(items, names.unwrap_or_default())
            }
            other => other,
        })
    }

    /// A CHARSXP (with its own flags): None for NA.
    fn string(&mut self) -> Parse<Option<String>> {
        let flags = self.owing(4, Self::flags)?;
        if flags & 0xff != CHARSXP {
            return Err(Stop::Bad(format!("a string element of type {}", flags & 0xff)));
        }
        let n = self.int()?;
        if n == -1 {
            return Ok(None);
        }
        let n = usize::try_from(n).map_err(|_| Stop::Bad("a string of negative length".into()))?;
        if n > MAX_BYTES - self.pos {
            return Err(Stop::Bad(format!("a string of {} bytes (over the {} byte cap)", n, MAX_BYTES)));
        }
        Ok(Some(String::from_utf8_lossy(self.take(n)?).into_owned()))
    }

    /// A pairlist whose first cell's flags were read: attributes, tag and value of each
    /// cell, up to the terminating NULL (read in a loop: R writes the rest as the next cell).
    fn pairlist(&mut self, mut flags: u32, depth: usize) -> Parse<Value> {
        let mut cells = Vec::new();
        loop {
            // Each cell holds a value and is followed by another cell or NULL (4 bytes each).
            let tagged = flags & HAS_TAG != 0;
            if flags & HAS_ATTR != 0 {
                self.owing(if tagged { 12 } else { 8 }, |c| c.item(depth + 1))?;
            }
            let tag = if tagged {
                match self.owing(8, |c| c.item(depth + 1))? {
                    Value::Symbol(s) => Some(s),
                    _ => return Err(Stop::Bad("a pairlist tag that is not a symbol".into())),
                }
            } else {
                None
            };
            cells.push((tag, self.owing(4, |c| c.item(depth + 1))?));
            flags = self.flags()?;
            match flags & 0xff {
                LISTSXP => continue,
                NILVALUE_SXP => return Ok(Value::Pairs(cells)),
                _ => return Err(Stop::Bad("a pairlist that does not end in NULL".into())),
            }
        }
    }
}

/// The element of a named list called `name`.
fn element<'v>(items: &'v [Value], names: &[Option<String>], name: &str) -> Option<&'v Value> {
    names.iter().position(|n| n.as_deref() == Some(name)).and_then(|i| items.get(i))
}

/// The PID and token from a complete message, if it has the shape of a worker's answer.
fn answer(message: &Value) -> Step {
    let reject = |why: &str| Step::Reject(why.to_string());
    let Value::List(items, names) = message else { return reject("the message is not a list") };
    match element(items, names, "type") {
        Some(Value::Str(t)) if t.len() == 1 && t[0].as_deref() == Some("VALUE") => {}
        _ => return reject("the message is not of type VALUE"),
    }
    if !matches!(element(items, names, "success"), Some(Value::Logical(v)) if v[..] == [1]) {
        return reject("the handshake did not succeed on the worker");
    }
    let Some(Value::List(items, names)) = element(items, names, "value") else {
        return reject("the message's value is not a list");
    };
    let pid = match element(items, names, "pid") {
        Some(Value::Int(v)) if v.len() == 1 && v[0] > 0 => v[0],
        Some(Value::Real(v)) if v.len() == 1 && v[0] >= 1.0 && v[0] <= f64::from(i32::MAX) && v[0].fract() == 0.0 => v[0] as i32,
        _ => return reject("the answer has no PID"),
    };
    let token = match element(items, names, "token") {
        Some(Value::Str(v)) if v.len() == 1 => v[0].clone(),
        _ => None,
    };
    Step::Done { pid, token }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `bytes` as R would read them: only as many as asked for at each step.
    fn pull(bytes: &[u8]) -> (Step, usize) {
        let mut read = 0;
        loop {
            match step(&bytes[..read]) {
                Step::Need(n) => {
                    assert!(n > 0);
                    if read + n > bytes.len() {
                        return (Step::Need(read + n - bytes.len()), read);
                    }
                    read += n;
                }
                other => return (other, read),
            }
        }
    }

    // A worker's answer as R 4.2 serializes it: list(type = "VALUE", value = list(pid =
    // 4242L, token = "ab12"), success = TRUE, time = NULL, tag = NULL), xdr, version 3.
    fn xdr_v3() -> Vec<u8> {
        let mut b = b"X\n".to_vec();
        let int = |b: &mut Vec<u8>, i: i32| b.extend_from_slice(&i.to_be_bytes());
        let chars = |b: &mut Vec<u8>, s: &str| {
            b.extend_from_slice(&0x00040009u32.to_be_bytes());
            b.extend_from_slice(&(s.len() as i32).to_be_bytes());
            b.extend_from_slice(s.as_bytes());
        };
        int(&mut b, 3);
        int(&mut b, 0x040202);
        int(&mut b, 0x030500);
        int(&mut b, 5);
        b.extend_from_slice(b"UTF-8");
        // The outer list with names.
        int(&mut b, (VECSXP | HAS_ATTR) as i32);
        int(&mut b, 5);
        int(&mut b, STRSXP as i32);
        int(&mut b, 1);
        chars(&mut b, "VALUE");
        int(&mut b, (VECSXP | HAS_ATTR) as i32);
        int(&mut b, 2);
        int(&mut b, INTSXP as i32);
        int(&mut b, 1);
        int(&mut b, 4242);
        int(&mut b, STRSXP as i32);
        int(&mut b, 1);
        chars(&mut b, "ab12");
        // value's attributes: names = c("pid", "token").
        int(&mut b, (LISTSXP | HAS_TAG) as i32);
        int(&mut b, SYMSXP as i32);
        chars(&mut b, "names");
        int(&mut b, STRSXP as i32);
        int(&mut b, 2);
        chars(&mut b, "pid");
        chars(&mut b, "token");
        int(&mut b, NILVALUE_SXP as i32);
        int(&mut b, LGLSXP as i32);
        int(&mut b, 1);
        int(&mut b, 1);
        int(&mut b, NILVALUE_SXP as i32);
        int(&mut b, NILVALUE_SXP as i32);
        // Outer names, with `names` as a reference to the first symbol.
        int(&mut b, (LISTSXP | HAS_TAG) as i32);
        int(&mut b, ((1 << 8) | REFSXP) as i32);
        int(&mut b, STRSXP as i32);
        int(&mut b, 5);
        for n in ["type", "value", "success", "time", "tag"] {
            chars(&mut b, n);
        }
        int(&mut b, NILVALUE_SXP as i32);
        b
    }

    #[test]
    fn a_worker_answer_is_read_piece_by_piece_and_never_beyond() {
        let msg = xdr_v3();
        let (last, read) = pull(&msg);
        assert_eq!(last, Step::Done { pid: 4242, token: Some("ab12".into()) });
        assert_eq!(read, msg.len());
        assert_eq!(step(&[]), Step::Need(18), "a header and the value's flags, at least");
        assert_eq!(step(&msg[..2]), Step::Need(16), "the rest of the header, the value's flags");
        let mut steps = 0;
        let mut read = 0;
        while let Step::Need(n) = step(&msg[..read]) {
            read += n;
            steps += 1;
        }
        assert!(steps <= 30, "{} round trips through R", steps);
        let mut longer = msg.clone();
        longer.push(0);
        assert!(matches!(step(&longer), Step::Reject(_)), "R never hands over more than asked");
    }

    /// Answers as R 4.2 serializes them (fuzz/seeds/worker_handshake, written by R with
    /// xdr and native byte order, serialization versions 2 and 3).
    #[test]
    fn answers_serialized_by_r_in_every_binary_form() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/worker_handshake");
        for name in ["answer-xdr-v2", "answer-xdr-v3", "answer-native-v2", "answer-native-v3"] {
            let msg = std::fs::read(dir.join(name)).expect("seed");
            let (last, read) = pull(&msg);
            assert_eq!(last, Step::Done { pid: 4242, token: Some("0123456789abcdef0123456789abcdef".into()) }, "{}", name);
            assert_eq!(read, msg.len(), "{}", name);
        }
        // success = FALSE (the handshake failed on the worker) and the master's own EXEC.
        for name in ["failed-na-token", "exec-message"] {
            assert!(matches!(pull(&std::fs::read(dir.join(name)).expect("seed")).0, Step::Reject(_)), "{}", name);
        }
    }

    #[test]
    fn strangers_are_refused() {
        for (bytes, why) in [
            (&b"GET / HTTP/1.1\r\nHost: x\r\n"[..], "not R's binary"),
            (&b"A\n3\n262402\n197888\n5\nUTF-8\n"[..], "not R's binary"),
            (&b"X\n\0\0\0\x07............"[..], "version 7"),
        ] {
            match pull(bytes).0 {
                Step::Reject(w) => assert!(w.contains(why), "{}", w),
                other => panic!("{:?}", other),
            }
        }
        // A huge length is refused at once, before any wait for its data.
        let mut huge = xdr_v3()[..23 + 4].to_vec();
        huge.truncate(23);
        huge.extend_from_slice(&(VECSXP as i32).to_be_bytes());
        huge.extend_from_slice(&0x7fff_ffffi32.to_be_bytes());
        assert!(matches!(step(&huge), Step::Reject(w) if w.contains("cap")));
        // A truncated message only ever asks for more.
        let msg = xdr_v3();
        assert!(matches!(pull(&msg[..msg.len() - 3]).0, Step::Need(_)));
        // Deep nesting.
        let mut deep = xdr_v3()[..23].to_vec();
        for _ in 0..20 {
            deep.extend_from_slice(&(VECSXP as i32).to_be_bytes());
            deep.extend_from_slice(&1i32.to_be_bytes());
        }
        assert!(matches!(pull(&deep).0, Step::Reject(w) if w.contains("nested")));
        // An environment (what unserialize() would build and run hooks of).
        let mut env = xdr_v3()[..23].to_vec();
        env.extend_from_slice(&4i32.to_be_bytes());
        assert!(matches!(pull(&env).0, Step::Reject(w) if w.contains("type 4")));
    }
}
