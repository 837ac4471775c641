//! The list form shared by knock sequences and TCP flag lists: items
//! separated by commas, whitespace around items allowed; a text that is
//! blank is an empty list, which both refuse.

use std::fmt;

/// The items of the list `s`, untrimmed (each parser trims its items), or
/// `None` when `s` is blank.
pub(crate) fn items(s: &str) -> Option<std::str::Split<'_, char>> {
    (!s.trim().is_empty()).then(|| s.split(','))
}

/// Write `items` in list form (comma separated, no spaces): what
/// [`items`] reads back.
pub(crate) fn write<T: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    items: impl IntoIterator<Item = T>,
) -> fmt::Result {
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            f.write_str(",")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct List(&'static [&'static str]);

    impl fmt::Display for List {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write(f, self.0)
        }
    }

    #[test]
    fn blank_text_has_no_items_and_lists_round_trip() {
        for blank in ["", " ", "\t \n"] {
            assert!(items(blank).is_none(), "{blank:?}");
        }
        let got: Vec<&str> = items(" a, b ,,c").unwrap().collect();
        assert_eq!(got, [" a", " b ", "", "c"]);
        assert_eq!(List(&["a", "b", "c"]).to_string(), "a,b,c");
        assert_eq!(List(&["a"]).to_string(), "a");
        assert_eq!(List(&[]).to_string(), "");
        let text = List(&["x", "y"]).to_string();
        assert_eq!(items(&text).unwrap().collect::<Vec<_>>(), ["x", "y"]);
    }
}
