//! What a Java program's files say: the public class (which names the file) and the class
//! that declares `main` (which the run starts), read from source without comments and
//! string contents.

use crate::run::InputFile;

/// Modifiers that may stand between `public` and a top-level type's keyword.
const MODIFIERS: [&str; 6] = ["final", "abstract", "strictfp", "sealed", "non-sealed", "static"];
/// The keywords that declare a type.
const TYPE_KEYWORDS: [&str; 5] = ["class", "interface", "enum", "record", "@interface"];

/// The name of the first public type in Java source: `public`, then any modifiers
/// (`final`, `abstract`, `strictfp`, `sealed`, `non-sealed`) and annotations (with their
/// arguments), then `class|interface|enum|record|@interface X`.
pub(super) fn java_public_class(code: &str) -> Option<String> {
    let code = strip_java_comments(code);
    let words: Vec<&str> = code.split(|c: char| c.is_whitespace() || c == '{').filter(|w| !w.is_empty()).collect();
    (0..words.len()).filter(|&i| words[i] == "public").find_map(|i| {
        let mut j = i + 1;
        while let Some(w) = words.get(j) {
            if TYPE_KEYWORDS.contains(w) {
                return words.get(j + 1).and_then(|name| identifier(name));
            }
            if MODIFIERS.contains(w) {
                j += 1;
            } else if w.starts_with('@') {
                j = after_annotation(&words, j);
            } else {
                return None;
            }
        }
        None
    })
}

/// The index of the word after the annotation starting at `words[at]`, with its
/// parenthesised arguments however they are spaced (`@A`, `@A("x")`, `@A( v = 1 )`).
fn after_annotation(words: &[&str], at: usize) -> usize {
    let (mut opened, mut closed) = (0usize, 0usize);
    let mut i = at;
    while let Some(w) = words.get(i) {
        opened += w.matches('(').count();
        closed += w.matches(')').count();
        i += 1;
        // `@A` then `(x)` as the next word is still one annotation
        let opens_next = words.get(i).is_some_and(|n| n.starts_with('('));
        if closed >= opened && !(i == at + 1 && opens_next) {
            return i;
        }
    }
    i
}

/// The class (with its package) whose body declares `static void main(`.
pub(super) fn java_main_class(files: &[InputFile]) -> Option<String> {
    let mut found = None;
    for f in files.iter().filter(|f| f.path.ends_with(".java")) {
        let code = strip_java_comments(&String::from_utf8_lossy(&f.contents));
        let Some(at) = find_main(&code) else { continue };
        // the last type declared before `main` encloses it (nested types aside)
        let before = &code[..at];
        let words: Vec<&str> =
            before.split(|c: char| c.is_whitespace() || c == '{').filter(|w| !w.is_empty()).collect();
        let class = words
            .windows(2)
            .rev()
            .find(|w| matches!(w[0], "class" | "enum" | "record" | "interface"))
            .and_then(|w| identifier(w[1]));
        let Some(class) = class else { continue };
        let package =
            code.split(';').next().and_then(|first| first.trim().strip_prefix("package ")).map(|p| p.trim().to_owned());
        let name = package.map_or_else(|| class.clone(), |p| format!("{p}.{class}"));
        // prefer the entry's public class when several have main
        if found.is_none() {
            found = Some(name);
        }
    }
    found
}

fn find_main(code: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = code[from..].find("static") {
        let at = from + i;
        let rest = code[at + "static".len()..].trim_start();
        if let Some(rest) = rest.strip_prefix("void")
            && rest.trim_start().starts_with("main")
            && rest.trim_start()["main".len()..].trim_start().starts_with('(')
        {
            return Some(at);
        }
        from = at + "static".len();
    }
    None
}

/// A Java identifier at the start of `w` (`Main<T>` -> `Main`).
fn identifier(w: &str) -> Option<String> {
    let id: String = w.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '$').collect();
    (!id.is_empty() && !id.starts_with(|c: char| c.is_ascii_digit())).then_some(id)
}

/// Java source without comments and string contents (so a `main` in either is not taken).
fn strip_java_comments(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut chars = code.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
                out.push(' ');
            }
            '"' | '\'' => {
                let quote = c;
                out.push(quote);
                let mut escaped = false;
                for c in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == quote {
                        break;
                    }
                }
                out.push(quote);
            }
            c => out.push(c),
        }
    }
    out
}
