//! What an ONNX file says about its data, read before ONNX Runtime sees it: which external data
//! files its tensors name (a relative `location` is otherwise resolved against the process's
//! working directory, so a model could read any file below it), and how many bytes its
//! initializers declare.
//!
//! A read-only walk of the protobuf wire format over exactly the messages that can hold
//! tensors: the model's graph and functions, graphs' initializers and nodes, nodes'
//! attributes, and the subgraphs of `If`, `Loop` and `Scan` bodies, to a bounded depth. It
//! never allocates in proportion to a length the file claims.

/// Deepest subgraph nesting scanned; deeper is refused (a hostile file could nest until the
/// stack overflows).
const MAX_DEPTH: usize = 64;

/// Why an ONNX file could not be scanned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("not a valid ONNX file: {0}")]
    Malformed(&'static str),
    #[error("the model nests subgraphs more than {MAX_DEPTH} deep")]
    TooDeep,
}

/// A tensor whose data lives in another file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalRef {
    /// The tensor's name.
    pub tensor: String,
    /// The file, as the model names it (relative to the model, by the ONNX convention).
    pub location: String,
    /// Where in the file, and how many bytes (`None`: to the end).
    pub offset: u64,
    pub length: Option<u64>,
}

/// What the scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OnnxFacts {
    /// Every tensor stored outside the file.
    pub external: Vec<ExternalRef>,
    /// Bytes the initializers and constant tensors declare (dims x element size), saturating.
    pub declared_bytes: u64,
    /// Bytes ops with a constant output shape (`ConstantOfShape`, `Expand`, `Tile`) will
    /// allocate, at least.
    pub allocated_bytes: u64,
}

/// Scans `bytes` (a serialised `ModelProto`).
pub fn scan(bytes: &[u8]) -> Result<OnnxFacts, ScanError> {
    let mut facts = OnnxFacts::default();
    for field in Fields::new(bytes) {
        let (number, value) = field?;
        match (number, value) {
            // ModelProto.graph
            (7, Value::Bytes(b)) => graph(b, &mut facts, 0)?,
            // ModelProto.functions: FunctionProto.node (7)
            (25, Value::Bytes(b)) => {
                for f in Fields::new(b) {
                    if let (7, Value::Bytes(n)) = f? {
                        node(n, &mut facts, 0, &[])?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(facts)
}

fn graph(bytes: &[u8], facts: &mut OnnxFacts, depth: usize) -> Result<(), ScanError> {
    if depth > MAX_DEPTH {
        return Err(ScanError::TooDeep);
    }
    // Small int64 constants first (wire order puts nodes before initializers): a shape given
    // as a constant says how much an op will allocate.
    let mut shapes: Vec<(String, Vec<i64>)> = Vec::new();
    for field in Fields::new(bytes) {
        match field? {
            (5, Value::Bytes(b)) => {
                tensor(b, facts)?;
                if let Some(c) = int64_constant(b)? {
                    shapes.push(c);
                }
            }
            (15, Value::Bytes(b)) => sparse_tensor(b, facts)?,
            (1, Value::Bytes(b)) => {
                if let Some(c) = constant_node(b)? {
                    shapes.push(c);
                }
            }
            _ => {}
        }
    }
    for field in Fields::new(bytes) {
        if let (1, Value::Bytes(b)) = field? {
            node(b, facts, depth, &shapes)?;
        }
    }
    Ok(())
}

/// A tensor's name and values when it is a small int64 tensor (a shape).
fn int64_constant(bytes: &[u8]) -> Result<Option<(String, Vec<i64>)>, ScanError> {
    let (mut name, mut data_type, mut values) = (String::new(), 0, Vec::new());
    for field in Fields::new(bytes) {
        match field? {
            (2, Value::Varint(t)) => data_type = t,
            (8, Value::Bytes(n)) => name = String::from_utf8_lossy(n).into_owned(),
            (9, Value::Bytes(raw)) if raw.len() <= 8 * 16 => {
                values = raw
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                    .collect()
            }
            (7, Value::Varint(v)) if values.len() < 16 => values.push(v as i64),
            (7, Value::Bytes(mut packed)) => {
                while !packed.is_empty() && values.len() < 16 {
                    let (v, rest) = varint(packed)?;
                    values.push(v as i64);
                    packed = rest;
                }
            }
            _ => {}
        }
    }
    Ok((data_type == 7 && !values.is_empty()).then_some((name, values)))
}

/// A `Constant` node's output name and value, when the value is a small int64 tensor.
fn constant_node(bytes: &[u8]) -> Result<Option<(String, Vec<i64>)>, ScanError> {
    let (mut op, mut output, mut value) = (&[][..], String::new(), None);
    for field in Fields::new(bytes) {
        match field? {
            (2, Value::Bytes(o)) => output = String::from_utf8_lossy(o).into_owned(),
            (4, Value::Bytes(t)) => op = t,
            (5, Value::Bytes(attr)) => {
                for a in Fields::new(attr) {
                    if let (5, Value::Bytes(t)) = a? {
                        value = int64_constant(t)?.map(|(_, v)| v);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(match (op, value) {
        (b"Constant", Some(v)) => Some((output, v)),
        _ => None,
    })
}

fn node(
    bytes: &[u8],
    facts: &mut OnnxFacts,
    depth: usize,
    shapes: &[(String, Vec<i64>)],
) -> Result<(), ScanError> {
    let (mut op, mut inputs) = (&[][..], Vec::new());
    for field in Fields::new(bytes) {
        match field? {
            (1, Value::Bytes(i)) => inputs.push(i),
            (4, Value::Bytes(t)) => op = t,
            // NodeProto.attribute
            (5, Value::Bytes(attr)) => {
                for a in Fields::new(attr) {
                    match a? {
                        (5, Value::Bytes(t)) | (10, Value::Bytes(t)) => tensor(t, facts)?,
                        (6, Value::Bytes(g)) | (11, Value::Bytes(g)) => graph(g, facts, depth + 1)?,
                        (22, Value::Bytes(s)) | (23, Value::Bytes(s)) => sparse_tensor(s, facts)?,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    // Ops whose output size is a constant shape input: count what they will allocate (as
    // 8-byte elements, the widest they make).
    let shape_input = match op {
        b"ConstantOfShape" => inputs.first(),
        b"Expand" | b"Tile" => inputs.get(1),
        _ => None,
    };
    if let Some(shape) =
        shape_input.and_then(|name| shapes.iter().find(|(n, _)| n.as_bytes() == *name))
    {
        let elements = shape
            .1
            .iter()
            .fold(1u64, |acc, &d| acc.saturating_mul(d.max(0) as u64));
        facts.allocated_bytes = facts
            .allocated_bytes
            .saturating_add(elements.saturating_mul(8));
    }
    Ok(())
}

fn sparse_tensor(bytes: &[u8], facts: &mut OnnxFacts) -> Result<(), ScanError> {
    for field in Fields::new(bytes) {
        if let (1 | 2, Value::Bytes(t)) = field? {
            tensor(t, facts)?;
        }
    }
    Ok(())
}

/// Bytes per element of an ONNX `TensorProto.DataType` (strings count as 1).
fn element_size(data_type: u64) -> u64 {
    match data_type {
        1 | 6 | 12 => 4,       // float, int32, uint32
        2..=3 | 9 => 1,        // uint8, int8, bool
        4 | 5 | 10 | 16 => 2,  // uint16, int16, float16, bfloat16
        7 | 11 | 13 | 14 => 8, // int64, double, uint64, complex64
        15 => 16,              // complex128
        _ => 1,
    }
}

fn tensor(bytes: &[u8], facts: &mut OnnxFacts) -> Result<(), ScanError> {
    let mut elements: u64 = 1;
    let mut data_type = 0;
    let mut name = String::new();
    let mut external = false;
    let mut location = None;
    let (mut offset, mut length) = (0u64, None);
    for field in Fields::new(bytes) {
        match field? {
            (1, Value::Varint(d)) => elements = elements.saturating_mul(d),
            (1, Value::Bytes(packed)) => {
                let mut p = packed;
                while !p.is_empty() {
                    let (d, rest) = varint(p)?;
                    elements = elements.saturating_mul(d);
                    p = rest;
                }
            }
            (2, Value::Varint(t)) => data_type = t,
            (8, Value::Bytes(n)) => name = String::from_utf8_lossy(n).into_owned(),
            (14, Value::Varint(l)) => external = l == 1,
            (13, Value::Bytes(entry)) => {
                let (mut key, mut value) = (&[][..], &[][..]);
                for f in Fields::new(entry) {
                    match f? {
                        (1, Value::Bytes(k)) => key = k,
                        (2, Value::Bytes(v)) => value = v,
                        _ => {}
                    }
                }
                let text = String::from_utf8_lossy(value).into_owned();
                match key {
                    b"location" => location = Some(text),
                    b"offset" => offset = text.trim().parse().unwrap_or(u64::MAX),
                    b"length" => length = Some(text.trim().parse().unwrap_or(u64::MAX)),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    facts.declared_bytes = facts
        .declared_bytes
        .saturating_add(elements.saturating_mul(element_size(data_type)));
    if external || location.is_some() {
        facts.external.push(ExternalRef {
            tensor: name,
            location: location.unwrap_or_default(),
            offset,
            length,
        });
    }
    Ok(())
}

/// A field's payload.
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn varint(bytes: &[u8]) -> Result<(u64, &[u8]), ScanError> {
    let mut v: u64 = 0;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        v |= ((b & 0x7f) as u64) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((v, &bytes[i + 1..]));
        }
    }
    Err(ScanError::Malformed("a varint runs off the end"))
}

/// The fields of one message, in order.
struct Fields<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Fields {
            rest: bytes,
            failed: false,
        }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>), ScanError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        let result = (|| {
            let (key, rest) = varint(self.rest)?;
            let number = key >> 3;
            let (value, rest) = match key & 7 {
                0 => {
                    let (v, rest) = varint(rest)?;
                    (Value::Varint(v), rest)
                }
                1 => (
                    Value::Fixed,
                    rest.get(8..)
                        .ok_or(ScanError::Malformed("a 64-bit field runs off the end"))?,
                ),
                2 => {
                    let (len, rest) = varint(rest)?;
                    let len = usize::try_from(len)
                        .ok()
                        .filter(|&l| l <= rest.len())
                        .ok_or(ScanError::Malformed("a field is longer than the file"))?;
                    (Value::Bytes(&rest[..len]), &rest[len..])
                }
                5 => (
                    Value::Fixed,
                    rest.get(4..)
                        .ok_or(ScanError::Malformed("a 32-bit field runs off the end"))?,
                ),
                _ => return Err(ScanError::Malformed("an unknown wire type")),
            };
            self.rest = rest;
            Ok((number, value))
        })();
        if result.is_err() {
            self.failed = true;
        }
        Some(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::onnx::{self, Tensor};

    #[test]
    fn external_data_is_found_in_graphs_subgraphs_and_attributes() {
        let model = onnx::model(onnx::graph(
            vec![onnx::node(
                "If",
                &["c"],
                &["y"],
                vec![onnx::attr_graph(
                    "then_branch",
                    onnx::graph(
                        vec![],
                        vec![Tensor::external("w2", &[4], "sub/deep.bin", 16)],
                        &[],
                        &[],
                    ),
                )],
            )],
            vec![
                Tensor::external("w1", &[2, 3], "etc/passwd", 24),
                Tensor::floats("b", &[3], &[1.0, 2.0, 3.0]),
            ],
            &["c"],
            &["y"],
        ));
        let facts = scan(&model).unwrap();
        let mut locations: Vec<&str> = facts.external.iter().map(|e| e.location.as_str()).collect();
        locations.sort();
        assert_eq!(locations, ["etc/passwd", "sub/deep.bin"]);
        assert_eq!(facts.declared_bytes, 6 * 4 + 3 * 4 + 4 * 4);
    }

    #[test]
    fn damaged_and_hostile_files_are_errors_not_panics() {
        let model = onnx::model(onnx::graph(
            vec![],
            vec![Tensor::floats("b", &[2], &[1.0, 2.0])],
            &[],
            &[],
        ));
        for cut in 0..model.len() {
            let _ = scan(&model[..cut]);
        }
        assert!(scan(&[0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        // Subgraphs nested 100 deep.
        let mut g = onnx::graph(vec![], vec![], &[], &[]);
        for _ in 0..100 {
            g = onnx::graph(
                vec![onnx::node(
                    "If",
                    &["c"],
                    &["y"],
                    vec![onnx::attr_graph("then_branch", g)],
                )],
                vec![],
                &[],
                &[],
            );
        }
        assert_eq!(scan(&onnx::model(g)), Err(ScanError::TooDeep));
    }

    #[test]
    fn a_constant_shape_reveals_an_allocation_bomb() {
        let model = onnx::model(onnx::graph(
            vec![onnx::node("ConstantOfShape", &["shape"], &["big"], vec![])],
            vec![Tensor::int64s("shape", &[1], &[750_000_000])],
            &[],
            &["big"],
        ));
        assert_eq!(scan(&model).unwrap().allocated_bytes, 6_000_000_000);
    }
}
