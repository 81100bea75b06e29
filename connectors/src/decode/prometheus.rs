//! Prometheus text exposition format 0.0.4: node-exporter, dcgm-exporter and every other
//! `/metrics` endpoint.
//!
//! ```text
//! # HELP DCGM_FI_DEV_GPU_TEMP GPU temperature (in C).
//! # TYPE DCGM_FI_DEV_GPU_TEMP gauge
//! DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-…",Hostname="infer-03"} 61
//! http_requests_total{method="post",code="200"} 1027 1395066363000
//! ```
//!
//! Counters, gauges, histograms (`_bucket{le=..}`, `_sum`, `_count`), summaries
//! (`{quantile=..}`) and untyped series are all just samples with labels. `# HELP` and `# TYPE`
//! lines are checked for form; other comments are ignored.

use opsloop_schemas::telemetry::{MetricBatch, MetricSample};

use super::batch::{Span, StagedRow, Staging};
use super::{
    DEFAULT_MAX_RECORD_BYTES, DecodeError, Decoder, FallbackEntity, MetricSamplesBuilder,
    RecordContext, check_size, utf8_text,
};

/// Source column of samples from a Prometheus page unless configured otherwise.
pub const PROMETHEUS_SOURCE: &str = "prometheus";

/// Labels that name a sample's entity, in order of preference: dcgm-exporter writes `Hostname`
/// (`hostname` in some versions), Prometheus scrapes add `instance`.
const ENTITY_LABELS: [&str; 3] = ["Hostname", "hostname", "instance"];

/// Decodes a Prometheus text page (format 0.0.4) into one row per sample.
///
/// * Timestamps are milliseconds and become microseconds; a sample without one takes the
///   record timestamp.
/// * The entity is the first non-empty label of `Hostname`, `hostname`, `instance`, else the
///   record key, else `"unknown"`. The label stays among the labels.
/// * NaN and ±Inf values are legitimate in this format (a summary with no observations) but
///   have no place in the pipeline: such samples are skipped and counted in
///   [`skipped_non_finite`](Self::skipped_non_finite).
/// * A malformed line fails the whole page, naming the line.
#[derive(Debug, Clone)]
pub struct PrometheusTextDecoder {
    source: String,
    max_record_bytes: usize,
    skipped_non_finite: u64,
}

impl Default for PrometheusTextDecoder {
    fn default() -> Self {
        PrometheusTextDecoder {
            source: PROMETHEUS_SOURCE.to_owned(),
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            skipped_non_finite: 0,
        }
    }
}

impl PrometheusTextDecoder {
    pub fn new() -> Self {
        PrometheusTextDecoder::default()
    }

    /// The `source` column of every sample (default `"prometheus"`; `"dcgm"` for a
    /// dcgm-exporter scrape, say).
    pub fn with_source(self, source: impl Into<String>) -> Self {
        PrometheusTextDecoder {
            source: source.into(),
            ..self
        }
    }

    /// Rejects pages over `max` bytes ([`DEFAULT_MAX_RECORD_BYTES`] by default).
    pub fn with_max_record_bytes(self, max: usize) -> Self {
        PrometheusTextDecoder {
            max_record_bytes: max,
            ..self
        }
    }

    /// Samples with a NaN or infinite value skipped so far, over every page decoded without
    /// error (a failed page counts nothing: it goes to the dead-letter topic whole).
    pub fn skipped_non_finite(&self) -> u64 {
        self.skipped_non_finite
    }

    /// The samples of `page` as one [`MetricBatch`] per entity, in order of first appearance,
    /// for publishing a scrape to `telemetry.metrics`. Entities and times follow the same rules
    /// as [`Decoder::decode`], with `fallback_entity` in place of the record key.
    pub fn metric_batches(
        &mut self,
        page: &str,
        default_time_us: i64,
        fallback_entity: &str,
    ) -> Result<Vec<MetricBatch>, DecodeError> {
        check_size(page.as_bytes(), self.max_record_bytes)?;
        let mut staging = Staging::default();
        let skipped = parse_page(
            page,
            default_time_us,
            &self.source,
            &mut FallbackEntity::new(Some(fallback_entity.as_bytes())),
            &mut staging,
        )?;
        let mut batches: Vec<MetricBatch> = Vec::new();
        for row in staging.rows() {
            let entity = staging.get(row.entity, page);
            let batch = match batches.iter().position(|b| b.entity == entity) {
                Some(index) => &mut batches[index],
                None => {
                    batches.push(MetricBatch {
                        entity: entity.to_owned(),
                        source: self.source.clone(),
                        samples: Vec::new(),
                    });
                    let last = batches.len() - 1;
                    &mut batches[last]
                }
            };
            batch.samples.push(MetricSample {
                name: staging.get(row.name, page).to_owned(),
                labels: staging
                    .labels(row.labels)
                    .iter()
                    .map(|&(key, value)| {
                        (
                            staging.get(key, page).to_owned(),
                            staging.get(value, page).to_owned(),
                        )
                    })
                    .collect(),
                value: row.value,
                time_us: row.time_us,
            });
        }
        self.skipped_non_finite += skipped;
        Ok(batches)
    }
}

impl Decoder for PrometheusTextDecoder {
    type Rows = MetricSamplesBuilder;

    fn decode(
        &mut self,
        payload: &[u8],
        context: &RecordContext<'_>,
        out: &mut MetricSamplesBuilder,
    ) -> Result<usize, DecodeError> {
        check_size(payload, self.max_record_bytes)?;
        let page = utf8_text(payload, "the Prometheus text page")?;
        let staging = out.begin_record();
        let mut fallback = FallbackEntity::new(context.key);
        let skipped = parse_page(
            page,
            context.timestamp_us,
            &self.source,
            &mut fallback,
            staging,
        )?;
        self.skipped_non_finite += skipped;
        Ok(out.commit_staged(page))
    }
}

/// Parses `page` into `staging`, one row per sample with a finite value; returns how many
/// samples were skipped for a non-finite value. Names, label names and label values without
/// escapes are staged as spans of `page`, not copied.
pub(super) fn parse_page(
    page: &str,
    default_time_us: i64,
    source: &str,
    fallback: &mut FallbackEntity<'_>,
    staging: &mut Staging,
) -> Result<u64, DecodeError> {
    let source = staging.push_text(source);
    let mut skipped = 0;
    let mut next_line = 0;
    for (index, raw) in page.split('\n').enumerate() {
        let line_no = index + 1;
        let base = next_line;
        next_line += raw.len() + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let b = line.as_bytes();
        let fail = |at: usize, expected: &'static str| parse_error(line, at, line_no, expected);
        let mut i = skip_blank(b, 0);
        if i == b.len() {
            continue;
        }
        if b[i] == b'#' {
            check_comment(line, i + 1, line_no)?;
            continue;
        }

        let name_end = metric_name_end(b, i);
        if name_end == i {
            return Err(fail(i, "a metric name, a '#' comment or an empty line"));
        }
        let name = Span::payload(base + i, base + name_end);
        let labels_start = staging.labels_len();
        let text_start = staging.text_len();
        let mut entity: Option<(usize, Span)> = None;
        i = name_end;
        if b.get(i) == Some(&b'{') {
            let labels = Labels {
                page,
                line,
                base,
                line_no,
            };
            i = labels.parse(i + 1, staging, &mut entity)?;
        } else if b.get(i).is_some_and(|&c| !is_blank(c)) {
            return Err(fail(i, "'{' or a blank after the metric name"));
        }

        i = skip_blank(b, i);
        let value_end = token_end(b, i);
        let value: f64 = line[i..value_end]
            .parse()
            .map_err(|_| fail(i, "a sample value (a number, NaN, +Inf or -Inf)"))?;
        i = skip_blank(b, value_end);
        let time_us = if i < b.len() {
            let end = token_end(b, i);
            let ms: i64 = line[i..end]
                .parse()
                .map_err(|_| fail(i, "a timestamp in milliseconds or the end of the line"))?;
            let us = ms.checked_mul(1000).ok_or_else(|| {
                fail(
                    i,
                    "a timestamp in milliseconds within 292,000 years of 1970",
                )
            })?;
            let rest = skip_blank(b, end);
            if rest < b.len() {
                return Err(fail(rest, "the end of the line after the timestamp"));
            }
            us
        } else {
            default_time_us
        };

        if !value.is_finite() {
            skipped += 1;
            staging.truncate(labels_start, text_start);
            continue;
        }
        let entity = match entity {
            Some((_, span)) => span,
            None => fallback.span(staging)?,
        };
        staging.push_row(StagedRow {
            entity,
            name,
            labels: (labels_start, staging.labels_len()),
            value,
            time_us,
            source,
            line: line_no,
        });
    }
    Ok(skipped)
}

/// The label set of one sample line.
struct Labels<'p> {
    page: &'p str,
    line: &'p str,
    /// Offset of `line` in `page`.
    base: usize,
    line_no: usize,
}

impl Labels<'_> {
    fn fail(&self, at: usize, expected: &'static str) -> DecodeError {
        parse_error(self.line, at, self.line_no, expected)
    }

    /// Parses `name="value",...}` from `i` (just past the `{`) into staged labels; returns the
    /// position after the `}`. `entity` gets the most preferred entity label seen.
    fn parse(
        &self,
        mut i: usize,
        staging: &mut Staging,
        entity: &mut Option<(usize, Span)>,
    ) -> Result<usize, DecodeError> {
        let (line, b) = (self.line, self.line.as_bytes());
        let first_label = staging.labels_len();
        loop {
            i = skip_blank(b, i);
            if b.get(i) == Some(&b'}') {
                return Ok(i + 1);
            }
            let name_end = label_name_end(b, i);
            if name_end == i {
                return Err(self.fail(i, "a label name or '}'"));
            }
            let label = &line[i..name_end];
            let repeated = staging
                .labels((first_label, staging.labels_len()))
                .iter()
                .any(|&(key, _)| key.len() == label.len() && staging.get(key, self.page) == label);
            if repeated {
                return Err(self.fail(i, "a label name not already used in this sample"));
            }
            let key = Span::payload(self.base + i, self.base + name_end);
            i = skip_blank(b, name_end);
            if b.get(i) != Some(&b'=') {
                return Err(self.fail(i, "'=' after the label name"));
            }
            i = skip_blank(b, i + 1);
            if b.get(i) != Some(&b'"') {
                return Err(self.fail(i, "a label value in double quotes"));
            }
            i += 1;
            let value = match find_quote_or_backslash(&b[i..]) {
                Some(run) if b[i + run] == b'"' => {
                    let value = Span::payload(self.base + i, self.base + i + run);
                    i += run + 1;
                    value
                }
                _ => {
                    let (value, end) = self.unescape(i, staging)?;
                    i = end;
                    value
                }
            };
            staging.push_label(key, value);
            if value.len() > 0
                && let Some(rank) = ENTITY_LABELS.iter().position(|&l| l == label)
                && entity.is_none_or(|(best, _)| rank < best)
            {
                *entity = Some((rank, value));
            }

            i = skip_blank(b, i);
            match b.get(i) {
                Some(b',') => i += 1,
                Some(b'}') => return Ok(i + 1),
                _ => return Err(self.fail(i, "',' or '}' after the label value")),
            }
        }
    }

    /// Unescapes the label value from `i` (just past the opening quote) into the staging text;
    /// returns its span and the position after the closing quote.
    fn unescape(&self, mut i: usize, staging: &mut Staging) -> Result<(Span, usize), DecodeError> {
        let (line, b) = (self.line, self.line.as_bytes());
        let start = staging.text_len();
        loop {
            let Some(run) = find_quote_or_backslash(&b[i..]) else {
                return Err(self.fail(b.len(), "a '\"' closing the label value"));
            };
            staging.text_mut().push_str(&line[i..i + run]);
            i += run;
            if b[i] == b'"' {
                return Ok((staging.span_from(start), i + 1));
            }
            let unescaped = match b.get(i + 1) {
                Some(b'\\') => '\\',
                Some(b'"') => '"',
                Some(b'n') => '\n',
                _ => return Err(self.fail(i, "an escape \\\\, \\\" or \\n in the label value")),
            };
            staging.text_mut().push(unescaped);
            i += 2;
        }
    }
}

/// Checks a comment line from `i` (just past the `#`): `# HELP name text` and
/// `# TYPE name type` must be well formed; anything else is free text.
fn check_comment(line: &str, i: usize, line_no: usize) -> Result<(), DecodeError> {
    let b = line.as_bytes();
    let fail = |at: usize, expected: &'static str| parse_error(line, at, line_no, expected);
    let word = skip_blank(b, i);
    let word_end = token_end(b, word);
    let kind = &line[word..word_end];
    if kind != "HELP" && kind != "TYPE" {
        return Ok(());
    }
    let name = skip_blank(b, word_end);
    let name_end = metric_name_end(b, name);
    if name_end == name || b.get(name_end).is_some_and(|&c| !is_blank(c)) {
        return Err(fail(name, "a metric name after # HELP or # TYPE"));
    }
    if kind == "HELP" {
        return Ok(());
    }
    let kind = skip_blank(b, name_end);
    let kind_end = token_end(b, kind);
    if !matches!(
        &line[kind..kind_end],
        "counter" | "gauge" | "histogram" | "summary" | "untyped"
    ) {
        return Err(fail(
            kind,
            "a metric type: counter, gauge, histogram, summary or untyped",
        ));
    }
    let rest = skip_blank(b, kind_end);
    if rest < b.len() {
        return Err(fail(rest, "the end of the line after the metric type"));
    }
    Ok(())
}

fn parse_error(line: &str, at: usize, line_no: usize, expected: &'static str) -> DecodeError {
    const EXCERPT_CHARS: usize = 40;
    let rest = line.get(at..).unwrap_or(line);
    let found = if rest.is_empty() {
        "the end of the line".to_owned()
    } else {
        let cut: String = rest.chars().take(EXCERPT_CHARS).collect();
        if cut.len() < rest.len() {
            format!("{cut:?}...")
        } else {
            format!("{cut:?}")
        }
    };
    DecodeError::PrometheusParse {
        line: line_no,
        expected,
        found,
    }
}

/// Position of the first `"` or `\\` in `b`, eight bytes at a time: label values are long
/// (UUIDs, PCI ids, model names) and this scan is the parser's hottest loop.
fn find_quote_or_backslash(b: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    let zero_bytes = |w: u64| w.wrapping_sub(ONES) & !w & HIGHS;
    let chunks = b.chunks_exact(8);
    let tail = chunks.remainder();
    for (n, chunk) in chunks.enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        // The lowest flagged byte is exact (only bytes above a match can be false positives).
        let found = zero_bytes(word ^ (ONES * u64::from(b'"')))
            | zero_bytes(word ^ (ONES * u64::from(b'\\')));
        if found != 0 {
            return Some(n * 8 + (found.trailing_zeros() / 8) as usize);
        }
    }
    tail.iter()
        .position(|&c| c == b'"' || c == b'\\')
        .map(|at| b.len() - tail.len() + at)
}

fn is_blank(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

fn skip_blank(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_blank(b[i]) {
        i += 1;
    }
    i
}

/// End of the token starting at `i`: the next blank or the end of the line.
fn token_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && !is_blank(b[i]) {
        i += 1;
    }
    i
}

/// Byte classes of names, looked up once per byte: this scan is most of a sample line.
const METRIC_START: u8 = 1;
const METRIC_REST: u8 = 2;
const LABEL_START: u8 = 4;
const LABEL_REST: u8 = 8;
static NAME_BYTES: [u8; 256] = name_bytes();

const fn name_bytes() -> [u8; 256] {
    let mut classes = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let byte = c as u8;
        let letter = byte.is_ascii_alphabetic() || byte == b'_';
        let digit = byte.is_ascii_digit();
        let mut class = 0;
        if letter || byte == b':' {
            class |= METRIC_START | METRIC_REST;
        }
        if digit {
            class |= METRIC_REST | LABEL_REST;
        }
        if letter {
            class |= LABEL_START | LABEL_REST;
        }
        classes[c] = class;
        c += 1;
    }
    classes
}

/// End of a metric name `[a-zA-Z_:][a-zA-Z0-9_:]*` starting at `i` (`i` itself if none).
fn metric_name_end(b: &[u8], i: usize) -> usize {
    name_end(b, i, METRIC_START, METRIC_REST)
}

/// End of a label name `[a-zA-Z_][a-zA-Z0-9_]*` starting at `i` (`i` itself if none).
fn label_name_end(b: &[u8], i: usize) -> usize {
    name_end(b, i, LABEL_START, LABEL_REST)
}

fn name_end(b: &[u8], i: usize, start: u8, rest: u8) -> usize {
    match b.get(i) {
        Some(&c) if NAME_BYTES[usize::from(c)] & start != 0 => {}
        _ => return i,
    }
    let tail = &b[i + 1..];
    let len = tail
        .iter()
        .position(|&c| NAME_BYTES[usize::from(c)] & rest == 0)
        .unwrap_or(tail.len());
    i + 1 + len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_classes_follow_the_format() {
        assert_eq!(metric_name_end(b"node_cpu:rate5m{", 0), 15);
        assert_eq!(metric_name_end(b"_a9 1", 0), 3);
        assert_eq!(metric_name_end(b"9a", 0), 0);
        assert_eq!(metric_name_end(b"a", 1), 1);
        assert_eq!(label_name_end(b"le=", 0), 2);
        assert_eq!(label_name_end(b"a:b=", 0), 1);
        assert_eq!(label_name_end(b":a", 0), 0);
        assert_eq!(label_name_end("x\u{e9}".as_bytes(), 0), 1);
    }

    #[test]
    fn finds_the_first_quote_or_backslash_at_every_offset() {
        for len in 0..40 {
            for at in 0..=len {
                for special in [b'"', b'\\'] {
                    let mut bytes: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
                    // Bytes that trip naive zero-byte tricks: 0x21 and 0x5b are one below.
                    for (i, byte) in bytes.iter_mut().enumerate() {
                        if i % 3 == 0 {
                            *byte = if i % 2 == 0 { 0x21 } else { 0x5b };
                        }
                    }
                    let expected = (at < len).then_some(at);
                    if at < len {
                        bytes[at] = special;
                        bytes[at + 1..].iter_mut().for_each(|b| *b = special);
                    }
                    assert_eq!(find_quote_or_backslash(&bytes), expected, "{len} {at}");
                }
            }
        }
    }
}
