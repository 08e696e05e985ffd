//! What a Java program's files say: the public class (which names the file) and the class
//! that declares `main` (which the run starts), read from source without comments and
//! string contents.

use crate::run::InputFile;

/// The name of the first `public class|interface|enum|record X` in Java source.
pub(super) fn java_public_class(code: &str) -> Option<String> {
    let code = strip_java_comments(code);
    let words: Vec<&str> = code.split(|c: char| c.is_whitespace() || c == '{').filter(|w| !w.is_empty()).collect();
    words
        .windows(3)
        .find_map(|w| {
            (w[0] == "public" && matches!(w[1], "class" | "interface" | "enum" | "record")).then(|| identifier(w[2]))?
        })
        .or_else(|| {
            // `public final class X`, `public abstract class X`
            words.windows(4).find_map(|w| {
                (w[0] == "public" && matches!(w[1], "final" | "abstract") && w[2] == "class")
                    .then(|| identifier(w[3]))?
            })
        })
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
