//! The compact JSON form a client asks for with `/ws?compact=1`: every
//! object member whose value is its type's default (`false`, `0`, `""`,
//! `null` or `[]`) is left out, at every depth, and a reader takes an
//! absent member as that default. Seed 002's message view carries 25
//! members and most are defaults on an ordinary text message, so this
//! takes `message.new` from about 590 bytes to about 320.
//!
//! It is a [`Serializer`] wrapped around another: the event's own
//! `Serialize` runs once, and each member's value is first asked whether
//! it is a default by [`is_default`], which looks at scalars, strings,
//! `None` and a sequence's length only, never into a structure.

use std::fmt;

use serde::ser::{
    self, Serialize, SerializeMap, SerializeSeq, SerializeStruct, SerializeStructVariant, SerializeTuple,
    SerializeTupleStruct, SerializeTupleVariant, Serializer,
};

/// `value` serialised so that no member holds a default. For JSON only: a
/// format that writes a structure's length before its members
/// (MessagePack) would count the members left out.
#[derive(Debug)]
pub struct Pruned<'a, T: ?Sized>(pub &'a T);

impl<T: Serialize + ?Sized> Serialize for Pruned<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(Compact(serializer))
    }
}

/// Whether `value` is a default a compact reader restores: `false`, a zero,
/// `""`, `null` (`None`, unit) or an empty sequence. A structure or a map
/// never is, and neither is `Some` of anything.
pub fn is_default<T: Serialize + ?Sized>(value: &T) -> bool {
    value.serialize(Probe).unwrap_or(false)
}

/// The serializer [`Pruned`] hands a value: `S` with members at their
/// default left out of every structure and map.
struct Compact<S>(S);

/// A structure, map or sequence being written through [`Compact`].
struct Members<C>(C);

macro_rules! forward {
    ($($method:ident($type:ty)),* $(,)?) => {
        $(fn $method(self, value: $type) -> Result<S::Ok, S::Error> { self.0.$method(value) })*
    };
}

impl<S: Serializer> Serializer for Compact<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Members<S::SerializeSeq>;
    type SerializeTuple = Members<S::SerializeTuple>;
    type SerializeTupleStruct = Members<S::SerializeTupleStruct>;
    type SerializeTupleVariant = Members<S::SerializeTupleVariant>;
    type SerializeMap = Members<S::SerializeMap>;
    type SerializeStruct = Members<S::SerializeStruct>;
    type SerializeStructVariant = Members<S::SerializeStructVariant>;

    forward! {
        serialize_bool(bool), serialize_i8(i8), serialize_i16(i16), serialize_i32(i32), serialize_i64(i64),
        serialize_i128(i128), serialize_u8(u8), serialize_u16(u16), serialize_u32(u32), serialize_u64(u64),
        serialize_u128(u128), serialize_f32(f32), serialize_f64(f64), serialize_char(char),
        serialize_str(&str), serialize_bytes(&[u8]), serialize_unit_struct(&'static str),
    }

    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_none()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.0.serialize_some(&Pruned(value))
    }

    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit()
    }

    fn serialize_unit_variant(self, name: &'static str, index: u32, variant: &'static str) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit_variant(name, index, variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, name: &'static str, value: &T) -> Result<S::Ok, S::Error> {
        self.0.serialize_newtype_struct(name, &Pruned(value))
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_newtype_variant(name, index, variant, &Pruned(value))
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        self.0.serialize_seq(len).map(Members)
    }

    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        self.0.serialize_tuple(len).map(Members)
    }

    fn serialize_tuple_struct(self, name: &'static str, len: usize) -> Result<Self::SerializeTupleStruct, S::Error> {
        self.0.serialize_tuple_struct(name, len).map(Members)
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        self.0.serialize_tuple_variant(name, index, variant, len).map(Members)
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        self.0.serialize_map(len).map(Members)
    }

    fn serialize_struct(self, name: &'static str, len: usize) -> Result<Self::SerializeStruct, S::Error> {
        self.0.serialize_struct(name, len).map(Members)
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        self.0.serialize_struct_variant(name, index, variant, len).map(Members)
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// The sequence-like compounds: each element is written pruned.
macro_rules! elements {
    ($($compound:ident :: $method:ident),* $(,)?) => {$(
        impl<C: $compound> $compound for Members<C> {
            type Ok = C::Ok;
            type Error = C::Error;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
                self.0.$method(&Pruned(value))
            }

            fn end(self) -> Result<C::Ok, C::Error> {
                self.0.end()
            }
        }
    )*};
}

elements! {
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
}

impl<C: SerializeMap> SerializeMap for Members<C> {
    type Ok = C::Ok;
    type Error = C::Error;

    /// A key written alone cannot be taken back when its value turns out
    /// to be a default, so such a member is kept (serde's own maps, and
    /// `serde_json::Value`'s, write whole entries).
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), C::Error> {
        self.0.serialize_key(key)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        self.0.serialize_value(&Pruned(value))
    }

    fn serialize_entry<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &mut self,
        key: &K,
        value: &V,
    ) -> Result<(), C::Error> {
        if is_default(value) {
            return Ok(());
        }
        self.0.serialize_entry(key, &Pruned(value))
    }

    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

/// The structures: a member at its default is skipped, any other is
/// written pruned.
macro_rules! members {
    ($($compound:ident),* $(,)?) => {$(
        impl<C: $compound> $compound for Members<C> {
            type Ok = C::Ok;
            type Error = C::Error;

            fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), C::Error> {
                if is_default(value) {
                    return self.0.skip_field(key);
                }
                self.0.serialize_field(key, &Pruned(value))
            }

            fn skip_field(&mut self, key: &'static str) -> Result<(), C::Error> {
                self.0.skip_field(key)
            }

            fn end(self) -> Result<C::Ok, C::Error> {
                self.0.end()
            }
        }
    )*};
}

members!(SerializeStruct, SerializeStructVariant);

/// The answer of [`Probe`] when a value is not a default: it stops looking.
#[derive(Debug)]
struct NotDefault;

impl fmt::Display for NotDefault {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("not a default")
    }
}

impl std::error::Error for NotDefault {}

impl ser::Error for NotDefault {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Self
    }
}

/// A serializer that answers whether what it is given is a default,
/// without writing anything.
struct Probe;

/// A sequence being probed that may still be empty.
struct Elements;

macro_rules! zero {
    ($($method:ident($type:ty) = $zero:expr),* $(,)?) => {
        $(fn $method(self, value: $type) -> Result<bool, NotDefault> { Ok(value == $zero) })*
    };
}

macro_rules! never {
    ($($method:ident($($arg:ty),*)),* $(,)?) => {
        $(fn $method(self, $(_: $arg),*) -> Result<bool, NotDefault> { Ok(false) })*
    };
}

impl Serializer for Probe {
    type Ok = bool;
    type Error = NotDefault;
    type SerializeSeq = Elements;
    type SerializeTuple = ser::Impossible<bool, NotDefault>;
    type SerializeTupleStruct = ser::Impossible<bool, NotDefault>;
    type SerializeTupleVariant = ser::Impossible<bool, NotDefault>;
    type SerializeMap = ser::Impossible<bool, NotDefault>;
    type SerializeStruct = ser::Impossible<bool, NotDefault>;
    type SerializeStructVariant = ser::Impossible<bool, NotDefault>;

    zero! {
        serialize_bool(bool) = false, serialize_i8(i8) = 0, serialize_i16(i16) = 0, serialize_i32(i32) = 0,
        serialize_i64(i64) = 0, serialize_i128(i128) = 0, serialize_u8(u8) = 0, serialize_u16(u16) = 0,
        serialize_u32(u32) = 0, serialize_u64(u64) = 0, serialize_u128(u128) = 0,
    }

    never! {
        serialize_char(char), serialize_bytes(&[u8]), serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    }

    fn serialize_f32(self, value: f32) -> Result<bool, NotDefault> {
        Ok(value == 0.0)
    }

    fn serialize_f64(self, value: f64) -> Result<bool, NotDefault> {
        Ok(value == 0.0)
    }

    fn serialize_str(self, value: &str) -> Result<bool, NotDefault> {
        Ok(value.is_empty())
    }

    fn serialize_none(self) -> Result<bool, NotDefault> {
        Ok(true)
    }

    fn serialize_unit(self) -> Result<bool, NotDefault> {
        Ok(true)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<bool, NotDefault> {
        Ok(false)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result<bool, NotDefault> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<bool, NotDefault> {
        Ok(false)
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Elements, NotDefault> {
        match len {
            Some(0) | None => Ok(Elements),
            Some(_) => Err(NotDefault),
        }
    }

    // Anything else is a structure: never a default. `Err` stops the
    // value's `Serialize` before it walks its members.
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, NotDefault> {
        Err(NotDefault)
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, NotDefault> {
        Err(NotDefault)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, NotDefault> {
        Err(NotDefault)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, NotDefault> {
        Err(NotDefault)
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, NotDefault> {
        Err(NotDefault)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, NotDefault> {
        Err(NotDefault)
    }
}

impl SerializeSeq for Elements {
    type Ok = bool;
    type Error = NotDefault;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, _: &T) -> Result<(), NotDefault> {
        // A sequence of unknown length: one element is enough to know.
        Err(NotDefault)
    }

    fn end(self) -> Result<bool, NotDefault> {
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use serde::Serialize;
    use serde_json::json;

    use super::{Pruned, is_default};

    #[derive(Serialize)]
    struct Inner {
        id: i64,
        avatar: String,
    }

    #[derive(Serialize)]
    struct Outer {
        id: i64,
        text: String,
        empty: String,
        flag: bool,
        off: bool,
        zero: u64,
        none: Option<i64>,
        some_zero: Option<i64>,
        list: Vec<Inner>,
        nothing: Vec<Inner>,
        inner: Option<Inner>,
        extra: serde_json::Value,
    }

    #[test]
    fn every_default_member_is_left_out_at_every_depth() {
        let outer = Outer {
            id: 7,
            text: "hi".into(),
            empty: String::new(),
            flag: true,
            off: false,
            zero: 0,
            none: None,
            some_zero: Some(0),
            list: vec![Inner { id: 1, avatar: String::new() }],
            nothing: Vec::new(),
            inner: Some(Inner { id: 0, avatar: "a".into() }),
            extra: json!({"keep": [0, ""], "drop": 0, "also": {}}),
        };
        let compact = serde_json::to_value(Pruned(&outer)).unwrap();
        assert_eq!(
            compact,
            json!({
                "id": 7,
                "text": "hi",
                "flag": true,
                "some_zero": 0,
                "list": [{"id": 1}],
                "inner": {"avatar": "a"},
                "extra": {"keep": [0, ""], "also": {}},
            })
        );
    }

    #[test]
    fn what_counts_as_a_default() {
        for default in [json!(false), json!(0), json!(0.0), json!(""), json!(null), json!([])] {
            assert!(is_default(&default), "{default}");
        }
        for kept in [json!(true), json!(-1), json!(0.5), json!(" "), json!([0]), json!({})] {
            assert!(!is_default(&kept), "{kept}");
        }
        assert!(!is_default(&Some(0)), "Some is never a default");
        assert!(is_default(&Vec::<i64>::new()));
        assert!(!is_default(&vec![Inner { id: 0, avatar: String::new() }]));
    }
}
