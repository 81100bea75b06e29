//! Incremental window state: accumulators per open window (or session) and group key, fed
//! one micro-batch at a time, so state grows with the number of series, not of events.
//!
//! Fixed windows (tumbling, hopping) keep, per open window, DataFusion's vectorised group-key
//! interner ([`GroupValues`]) and one [`GroupsAccumulator`] per aggregate (DataFusion's
//! [`GroupsAccumulatorAdapter`] for aggregates without one). Sessions keep, per group key,
//! its sessions in event-time order, each with one [`Accumulator`] per aggregate, so two
//! sessions bridged by an event merge their partial states.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBuilder, Int64Array, Int64Builder, RecordBatch,
    UInt32Array,
};
use arrow::compute::{filter, take};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use arrow::row::{RowConverter, SortField};
use datafusion::common::{Result as DfResult, ScalarValue, internal_datafusion_err};
use datafusion::logical_expr::{Accumulator, EmitTo, GroupsAccumulator};
use datafusion::physical_expr::GroupsAccumulatorAdapter;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use super::plan::{AggregateInput, AggregatePlan, DetectorPlan};
use super::window::window_column;

/// The output of one window (or session) that fired.
#[derive(Debug)]
pub(crate) struct Fired {
    pub(crate) start: i64,
    pub(crate) end: i64,
    pub(crate) revision: u32,
    pub(crate) batch: RecordBatch,
}

/// Columns every snapshot row starts with, before the key and state columns.
const SNAPSHOT_PREFIX: usize = 4;

/// The schema of the state snapshot: window bounds, emission state, keys, accumulator states.
pub(crate) fn snapshot_schema(plan: &DetectorPlan) -> DfResult<SchemaRef> {
    let mut fields = vec![
        Field::new("window_start", DataType::Int64, false),
        Field::new("window_end", DataType::Int64, false),
        Field::new("emitted_revision", DataType::Int64, true),
        Field::new("dirty", DataType::Boolean, false),
    ];
    for (i, key) in plan.key_schema().fields().iter().enumerate() {
        fields.push(Field::new(
            format!("key_{i}"),
            key.data_type().clone(),
            true,
        ));
    }
    for (i, aggregate) in plan.aggregates().iter().enumerate() {
        for (j, state) in aggregate.function.state_fields()?.iter().enumerate() {
            fields.push(Field::new(
                format!("state_{i}_{j}"),
                state.data_type().clone(),
                true,
            ));
        }
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// How many state columns each aggregate has in a snapshot.
fn state_widths(plan: &DetectorPlan) -> DfResult<Vec<usize>> {
    plan.aggregates()
        .iter()
        .map(|a| Ok(a.function.state_fields()?.len()))
        .collect()
}

fn groups_accumulator(aggregate: &AggregatePlan) -> DfResult<Box<dyn GroupsAccumulator>> {
    let function = &aggregate.function;
    if function.groups_accumulator_supported() {
        function.create_groups_accumulator()
    } else {
        let function = Arc::clone(function);
        Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
            function.create_accumulator()
        })))
    }
}

fn take_all(arrays: &[ArrayRef], indices: &UInt32Array) -> DfResult<Vec<ArrayRef>> {
    Ok(arrays
        .iter()
        .map(|a| take(a.as_ref(), indices, None))
        .collect::<Result<_, _>>()?)
}

/// The rows of one micro-batch routed to one window: all of them, or a selection.
fn select(input: &AggregateInput, rows: Option<&UInt32Array>) -> DfResult<AggregateInput> {
    let Some(indices) = rows else {
        return Ok(AggregateInput {
            times: input.times.clone(),
            keys: input.keys.clone(),
            values: input.values.clone(),
            filters: input.filters.clone(),
        });
    };
    Ok(AggregateInput {
        times: take(&input.times, indices, None)?
            .as_primitive::<Int64Type>()
            .clone(),
        keys: take_all(&input.keys, indices)?,
        values: input
            .values
            .iter()
            .map(|v| take_all(v, indices))
            .collect::<DfResult<_>>()?,
        filters: input
            .filters
            .iter()
            .map(|f| {
                f.as_ref()
                    .map(|f| Ok(take(f, indices, None)?.as_boolean().clone()))
                    .transpose()
            })
            .collect::<DfResult<_>>()?,
    })
}

/// One open tumbling or hopping window.
struct FixedWindow {
    end: i64,
    /// The key interner; `None` when the only `GROUP BY` is the window.
    groups: Option<Box<dyn GroupValues>>,
    num_groups: usize,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    /// The revision last emitted, `None` before the window first fires.
    emitted: Option<u32>,
    /// Whether rows arrived since the window last fired.
    dirty: bool,
}

impl std::fmt::Debug for FixedWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FixedWindow")
            .field("end", &self.end)
            .field("num_groups", &self.num_groups)
            .field("emitted", &self.emitted)
            .field("dirty", &self.dirty)
            .finish_non_exhaustive()
    }
}

impl FixedWindow {
    fn new(plan: &DetectorPlan, end: i64) -> DfResult<Self> {
        let groups = if plan.key_schema().fields().is_empty() {
            None
        } else {
            Some(new_group_values(
                Arc::clone(plan.key_schema()),
                &GroupOrdering::None,
            )?)
        };
        Ok(FixedWindow {
            end,
            groups,
            num_groups: 0,
            accumulators: plan
                .aggregates()
                .iter()
                .map(groups_accumulator)
                .collect::<DfResult<_>>()?,
            emitted: None,
            dirty: false,
        })
    }

    /// Interns `keys` into group indices (written to `indices`).
    fn intern(&mut self, keys: &[ArrayRef], rows: usize, indices: &mut Vec<usize>) -> DfResult<()> {
        match &mut self.groups {
            Some(groups) => {
                groups.intern(keys, indices)?;
                self.num_groups = groups.len();
            }
            None => {
                indices.clear();
                indices.resize(rows, 0);
                self.num_groups = 1;
            }
        }
        Ok(())
    }

    fn update(&mut self, input: &AggregateInput, indices: &mut Vec<usize>) -> DfResult<()> {
        self.intern(&input.keys, input.times.len(), indices)?;
        for ((accumulator, values), filter) in self
            .accumulators
            .iter_mut()
            .zip(&input.values)
            .zip(&input.filters)
        {
            accumulator.update_batch(values, indices, filter.as_ref(), self.num_groups)?;
        }
        self.dirty = true;
        Ok(())
    }

    /// Drains keys and accumulator states (group order), leaving the window empty.
    fn drain(&mut self) -> DfResult<(Vec<ArrayRef>, Vec<Vec<ArrayRef>>)> {
        let keys = match &mut self.groups {
            Some(groups) => groups.emit(EmitTo::All)?,
            None => Vec::new(),
        };
        let states = self
            .accumulators
            .iter_mut()
            .map(|a| a.state(EmitTo::All))
            .collect::<DfResult<_>>()?;
        Ok((keys, states))
    }

    /// Rebuilds an empty window from drained keys and states.
    fn refill(
        &mut self,
        plan: &DetectorPlan,
        keys: &[ArrayRef],
        states: &[Vec<ArrayRef>],
        rows: usize,
        indices: &mut Vec<usize>,
    ) -> DfResult<()> {
        let mut fresh = FixedWindow::new(plan, self.end)?;
        fresh.intern(keys, rows, indices)?;
        for (accumulator, state) in fresh.accumulators.iter_mut().zip(states) {
            accumulator.merge_batch(state, indices, fresh.num_groups)?;
        }
        self.groups = fresh.groups;
        self.num_groups = fresh.num_groups;
        self.accumulators = fresh.accumulators;
        Ok(())
    }

    /// Evaluates the window. With `keep`, the state survives (for late rows) through a round
    /// trip of the accumulators' partial states; without, it is consumed.
    fn evaluate(
        &mut self,
        plan: &DetectorPlan,
        start: i64,
        keep: bool,
        indices: &mut Vec<usize>,
    ) -> DfResult<RecordBatch> {
        let rows = self.num_groups;
        let (keys, values) = if keep {
            let (keys, states) = self.drain()?;
            let mut copy = FixedWindow::new(plan, self.end)?;
            copy.refill(plan, &keys, &states, rows, indices)?;
            self.refill(plan, &keys, &states, rows, indices)?;
            let values = copy
                .accumulators
                .iter_mut()
                .map(|a| a.evaluate(EmitTo::All))
                .collect::<DfResult<Vec<_>>>()?;
            (keys, values)
        } else {
            let keys = match &mut self.groups {
                Some(groups) => groups.emit(EmitTo::All)?,
                None => Vec::new(),
            };
            let values = self
                .accumulators
                .iter_mut()
                .map(|a| a.evaluate(EmitTo::All))
                .collect::<DfResult<Vec<_>>>()?;
            (keys, values)
        };
        let aggregated =
            plan.aggregate_output(window_column(start, self.end, rows), keys, values)?;
        plan.finish(aggregated)
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.groups.as_ref().map_or(0, |g| g.size())
            + self.accumulators.iter().map(|a| a.size()).sum::<usize>()
    }
}

/// Open tumbling or hopping windows by start.
#[derive(Debug)]
pub(crate) struct FixedWindows {
    slide: i64,
    width: i64,
    windows: BTreeMap<i64, FixedWindow>,
    /// Reused group-index buffer.
    indices: Vec<usize>,
}

impl FixedWindows {
    pub(crate) fn new(slide: i64, width: i64) -> Self {
        FixedWindows {
            slide,
            width,
            windows: BTreeMap::new(),
            indices: Vec::new(),
        }
    }

    /// Adds rows (none of them too late for every window) to the windows they fall in;
    /// windows already dropped (`end + lateness <= watermark`) are skipped.
    pub(crate) fn update(
        &mut self,
        plan: &DetectorPlan,
        input: &AggregateInput,
        watermark: i64,
        lateness: i64,
    ) -> DfResult<()> {
        let times = input.times.values();
        let (Some(&min), Some(&max)) = (times.iter().min(), times.iter().max()) else {
            return Ok(());
        };
        let per_event = self.width / self.slide;
        let (first, last) = (min.div_euclid(self.slide), max.div_euclid(self.slide));
        if first == last {
            // The common case: the whole batch falls in the same windows.
            for window in (first - per_event + 1)..=first {
                self.update_window(plan, window * self.slide, input, None, watermark, lateness)?;
            }
            return Ok(());
        }
        // Rows by slide bucket; buckets are few, so a short list beats a map.
        let mut buckets: Vec<(i64, Vec<u32>)> = Vec::new();
        let mut current = 0;
        for (row, &time) in times.iter().enumerate() {
            let bucket = time.div_euclid(self.slide);
            if buckets.get(current).is_none_or(|(b, _)| *b != bucket) {
                current = match buckets.iter().position(|(b, _)| *b == bucket) {
                    Some(i) => i,
                    None => {
                        buckets.push((bucket, Vec::new()));
                        buckets.len() - 1
                    }
                };
            }
            buckets[current].1.push(row as u32);
        }
        buckets.sort_unstable_by_key(|(bucket, _)| *bucket);
        let mut windows: Vec<i64> = buckets
            .iter()
            .flat_map(|(bucket, _)| (bucket - per_event + 1)..=*bucket)
            .collect();
        windows.sort_unstable();
        windows.dedup();
        for window in windows {
            let rows: Vec<u32> = buckets
                .iter()
                .filter(|(bucket, _)| (window..window + per_event).contains(bucket))
                .flat_map(|(_, rows)| rows.iter().copied())
                .collect();
            let rows = UInt32Array::from(rows);
            let start = window * self.slide;
            self.update_window(plan, start, input, Some(&rows), watermark, lateness)?;
        }
        Ok(())
    }

    fn update_window(
        &mut self,
        plan: &DetectorPlan,
        start: i64,
        input: &AggregateInput,
        rows: Option<&UInt32Array>,
        watermark: i64,
        lateness: i64,
    ) -> DfResult<()> {
        let end = start + self.width;
        if end.saturating_add(lateness) <= watermark {
            return Ok(());
        }
        let window = match self.windows.entry(start) {
            Entry::Occupied(window) => window.into_mut(),
            Entry::Vacant(slot) => slot.insert(FixedWindow::new(plan, end)?),
        };
        match rows {
            None => window.update(input, &mut self.indices),
            Some(rows) => window.update(&select(input, Some(rows))?, &mut self.indices),
        }
    }

    /// Fires the windows complete at `watermark` that have rows not yet emitted, and drops
    /// those past their allowed lateness.
    pub(crate) fn on_watermark(
        &mut self,
        plan: &DetectorPlan,
        watermark: i64,
        lateness: i64,
    ) -> DfResult<Vec<Fired>> {
        let mut fired = Vec::new();
        let mut dropped = Vec::new();
        for (&start, window) in &mut self.windows {
            if window.end > watermark {
                continue;
            }
            let drop = window.end.saturating_add(lateness) <= watermark;
            if window.dirty {
                let revision = window.emitted.map_or(0, |r| r + 1);
                let batch = window.evaluate(plan, start, !drop, &mut self.indices)?;
                window.emitted = Some(revision);
                window.dirty = false;
                fired.push(Fired {
                    start,
                    end: window.end,
                    revision,
                    batch,
                });
            }
            if drop {
                dropped.push(start);
            }
        }
        for start in dropped {
            self.windows.remove(&start);
        }
        Ok(fired)
    }

    pub(crate) fn open_windows(&self) -> usize {
        self.windows.len()
    }

    pub(crate) fn active_groups(&self) -> usize {
        self.windows.values().map(|w| w.num_groups).sum()
    }

    pub(crate) fn state_bytes(&self) -> usize {
        self.windows.values().map(FixedWindow::size).sum::<usize>()
            + self.indices.capacity() * std::mem::size_of::<usize>()
    }

    /// The state as snapshot rows (see [`snapshot_schema`]); the windows go on unchanged.
    pub(crate) fn snapshot(&mut self, plan: &DetectorPlan) -> DfResult<RecordBatch> {
        let schema = snapshot_schema(plan)?;
        let mut batches = Vec::new();
        for (&start, window) in &mut self.windows {
            let rows = window.num_groups;
            let (keys, states) = window.drain()?;
            window.refill(plan, &keys, &states, rows, &mut self.indices)?;
            let mut columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from_value(start, rows)),
                Arc::new(Int64Array::from_value(window.end, rows)),
                Arc::new(Int64Array::from(vec![window.emitted.map(i64::from); rows])),
                Arc::new(BooleanArray::from(vec![window.dirty; rows])),
            ];
            columns.extend(keys);
            columns.extend(states.into_iter().flatten());
            batches.push(RecordBatch::try_new(Arc::clone(&schema), columns)?);
        }
        Ok(arrow::compute::concat_batches(&schema, &batches)?)
    }

    /// Rebuilds the windows of a snapshot (rows of one window are contiguous).
    pub(crate) fn restore(&mut self, plan: &DetectorPlan, state: &RecordBatch) -> DfResult<()> {
        let widths = state_widths(plan)?;
        let key_count = plan.key_schema().fields().len();
        let starts = state.column(0).as_primitive::<Int64Type>();
        let ends = state.column(1).as_primitive::<Int64Type>();
        let emitted = state.column(2).as_primitive::<Int64Type>();
        let dirty = state.column(3).as_boolean();
        let mut row = 0;
        while row < state.num_rows() {
            let start = starts.value(row);
            let mut run = 1;
            while row + run < state.num_rows() && starts.value(row + run) == start {
                run += 1;
            }
            let part = state.slice(row, run);
            let keys = part.columns()[SNAPSHOT_PREFIX..SNAPSHOT_PREFIX + key_count].to_vec();
            let states = split_states(&part, SNAPSHOT_PREFIX + key_count, &widths);
            let mut window = FixedWindow::new(plan, ends.value(row))?;
            window.refill(plan, &keys, &states, run, &mut self.indices)?;
            window.emitted = revision(emitted, row)?;
            window.dirty = dirty.value(row);
            self.windows.insert(start, window);
            row += run;
        }
        Ok(())
    }
}

fn split_states(batch: &RecordBatch, offset: usize, widths: &[usize]) -> Vec<Vec<ArrayRef>> {
    let mut offset = offset;
    widths
        .iter()
        .map(|&width| {
            let columns = batch.columns()[offset..offset + width].to_vec();
            offset += width;
            columns
        })
        .collect()
}

fn revision(emitted: &Int64Array, row: usize) -> DfResult<Option<u32>> {
    if emitted.is_null(row) {
        return Ok(None);
    }
    u32::try_from(emitted.value(row))
        .map(Some)
        .map_err(|_| internal_datafusion_err!("snapshot revision out of range"))
}

/// One session of one key: `[first, last + gap)`.
struct Session {
    slot: usize,
    first: i64,
    last: i64,
    accumulators: Vec<Box<dyn Accumulator>>,
    emitted: Option<u32>,
    dirty: bool,
}

impl Session {
    fn new(plan: &DetectorPlan, slot: usize, first: i64, last: i64) -> DfResult<Self> {
        Ok(Session {
            slot,
            first,
            last,
            accumulators: plan
                .aggregates()
                .iter()
                .map(|a| a.function.create_accumulator())
                .collect::<DfResult<_>>()?,
            emitted: None,
            dirty: false,
        })
    }

    /// Adds `other`'s rows to this session through its partial states.
    fn absorb(&mut self, mut other: Session) -> DfResult<()> {
        for (mine, theirs) in self.accumulators.iter_mut().zip(&mut other.accumulators) {
            let states = theirs
                .state()?
                .into_iter()
                .map(|s| s.to_array())
                .collect::<DfResult<Vec<_>>>()?;
            mine.merge_batch(&states)?;
        }
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
        self.emitted = self.emitted.max(other.emitted);
        self.dirty = true;
        Ok(())
    }
}

/// A group key and its sessions, ordered by start.
struct KeySessions {
    key: Box<[u8]>,
    sessions: Vec<usize>,
}

/// Open sessions of every group key.
pub(crate) struct Sessions {
    gap: i64,
    /// Whether the `GROUP BY` has keys besides the session.
    has_keys: bool,
    converter: RowConverter,
    slots: HashMap<Box<[u8]>, usize>,
    keys: Vec<Option<KeySessions>>,
    free_keys: Vec<usize>,
    sessions: Vec<Option<Session>>,
    free_sessions: Vec<usize>,
    /// Reused buffer: the sessions an event overlaps.
    overlapping: Vec<usize>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("gap", &self.gap)
            .field("keys", &self.slots.len())
            .field("sessions", &self.open_windows())
            .finish_non_exhaustive()
    }
}

impl Sessions {
    pub(crate) fn new(plan: &DetectorPlan, gap: i64) -> DfResult<Self> {
        let fields = plan
            .key_schema()
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        Ok(Sessions {
            gap,
            has_keys: !plan.key_schema().fields().is_empty(),
            converter: RowConverter::new(fields)?,
            slots: HashMap::new(),
            keys: Vec::new(),
            free_keys: Vec::new(),
            sessions: Vec::new(),
            free_sessions: Vec::new(),
            overlapping: Vec::new(),
        })
    }

    fn slot(&mut self, key: &[u8]) -> usize {
        if let Some(&slot) = self.slots.get(key) {
            return slot;
        }
        let entry = KeySessions {
            key: key.into(),
            sessions: Vec::new(),
        };
        let slot = match self.free_keys.pop() {
            Some(slot) => {
                self.keys[slot] = Some(entry);
                slot
            }
            None => {
                self.keys.push(Some(entry));
                self.keys.len() - 1
            }
        };
        self.slots.insert(key.into(), slot);
        slot
    }

    fn key_sessions(&mut self, slot: usize) -> DfResult<&mut KeySessions> {
        self.keys
            .get_mut(slot)
            .and_then(Option::as_mut)
            .ok_or_else(|| internal_datafusion_err!("session key slot {slot} is empty"))
    }

    fn session(&mut self, id: usize) -> DfResult<&mut Session> {
        self.sessions
            .get_mut(id)
            .and_then(Option::as_mut)
            .ok_or_else(|| internal_datafusion_err!("session {id} does not exist"))
    }

    fn insert_session(&mut self, session: Session) -> usize {
        match self.free_sessions.pop() {
            Some(id) => {
                self.sessions[id] = Some(session);
                id
            }
            None => {
                self.sessions.push(Some(session));
                self.sessions.len() - 1
            }
        }
    }

    /// Places an event of key `slot` at `time`: extends the session it falls in, opens one, or
    /// merges the sessions it bridges. Returns the session's id; merged-away ids are added to
    /// `retired` as `(old, survivor)` and not reused before the batch ends.
    fn place(
        &mut self,
        plan: &DetectorPlan,
        slot: usize,
        time: i64,
        retired: &mut Vec<(usize, usize)>,
    ) -> DfResult<usize> {
        let gap = self.gap;
        let mut overlapping = std::mem::take(&mut self.overlapping);
        overlapping.clear();
        let entry = self.keys[slot]
            .as_ref()
            .ok_or_else(|| internal_datafusion_err!("session key slot {slot} is empty"))?;
        let mut position = entry.sessions.len();
        for (i, &id) in entry.sessions.iter().enumerate() {
            if let Some(session) = &self.sessions[id] {
                if session.first - gap < time && time < session.last + gap {
                    overlapping.push(id);
                }
                if session.first > time && position == entry.sessions.len() {
                    position = i;
                }
            }
        }
        let Some(&survivor) = overlapping.first() else {
            self.overlapping = overlapping;
            let id = self.insert_session(Session::new(plan, slot, time, time)?);
            self.key_sessions(slot)?.sessions.insert(position, id);
            return Ok(id);
        };
        for &other in &overlapping[1..] {
            let absorbed = self.sessions[other]
                .take()
                .ok_or_else(|| internal_datafusion_err!("session {other} does not exist"))?;
            self.session(survivor)?.absorb(absorbed)?;
            self.key_sessions(slot)?.sessions.retain(|&id| id != other);
            retired.push((other, survivor));
        }
        self.overlapping = overlapping;
        let session = self.session(survivor)?;
        session.first = session.first.min(time);
        session.last = session.last.max(time);
        Ok(survivor)
    }

    /// Adds rows (none of them too late) to their keys' sessions.
    pub(crate) fn update(&mut self, plan: &DetectorPlan, input: &AggregateInput) -> DfResult<()> {
        let rows = input.times.len();
        if rows == 0 {
            return Ok(());
        }
        let times = input.times.values();
        let slots: Vec<usize> = if input.keys.is_empty() {
            vec![self.slot(&[]); rows]
        } else {
            let converted = self.converter.convert_columns(&input.keys)?;
            (0..rows)
                .map(|row| self.slot(converted.row(row).data()))
                .collect()
        };
        let mut order: Vec<u32> = (0..rows as u32).collect();
        order.sort_unstable_by_key(|&row| (slots[row as usize], times[row as usize], row));
        let mut assigned = vec![0; rows];
        let mut retired = Vec::new();
        for &row in &order {
            let row = row as usize;
            assigned[row] = self.place(plan, slots[row], times[row], &mut retired)?;
        }
        // Rows placed in a session that later merged away belong to the survivor.
        if !retired.is_empty() {
            let redirect: HashMap<usize, usize> = retired.iter().copied().collect();
            for id in &mut assigned {
                while let Some(&next) = redirect.get(id) {
                    *id = next;
                }
            }
            self.free_sessions
                .extend(retired.iter().map(|(old, _)| *old));
        }
        // A key's rows are in time order and its sessions partition time, so the rows of a
        // session are contiguous in `order`.
        let mut begin = 0;
        while begin < rows {
            let id = assigned[order[begin] as usize];
            let mut end = begin + 1;
            while end < rows && assigned[order[end] as usize] == id {
                end += 1;
            }
            let selection = if end - begin == rows {
                None
            } else {
                Some(UInt32Array::from(order[begin..end].to_vec()))
            };
            let part = select(input, selection.as_ref())?;
            let session = self.session(id)?;
            for ((accumulator, values), mask) in session
                .accumulators
                .iter_mut()
                .zip(&part.values)
                .zip(&part.filters)
            {
                match mask {
                    Some(mask) => {
                        let values = values
                            .iter()
                            .map(|v| filter(v.as_ref(), mask))
                            .collect::<Result<Vec<_>, _>>()?;
                        accumulator.update_batch(&values)?;
                    }
                    None => accumulator.update_batch(values)?,
                }
            }
            session.dirty = true;
            begin = end;
        }
        Ok(())
    }

    /// The key columns of one key's row bytes.
    fn key_columns(&self, key: &[u8]) -> DfResult<Vec<ArrayRef>> {
        if !self.has_keys {
            return Ok(Vec::new());
        }
        let parser = self.converter.parser();
        Ok(self.converter.convert_rows([parser.parse(key)])?)
    }

    /// Fires the sessions complete at `watermark` (`last + gap <= watermark`) with rows not
    /// yet emitted, and drops those past their allowed lateness; ordered by window, then key.
    pub(crate) fn on_watermark(
        &mut self,
        plan: &DetectorPlan,
        watermark: i64,
        lateness: i64,
    ) -> DfResult<Vec<Fired>> {
        let mut fired = Vec::new();
        for id in 0..self.sessions.len() {
            let Some(session) = self.sessions[id].as_mut() else {
                continue;
            };
            let end = session.last + self.gap;
            if end > watermark {
                continue;
            }
            let mut output = None;
            if session.dirty {
                let revision = session.emitted.map_or(0, |r| r + 1);
                session.emitted = Some(revision);
                session.dirty = false;
                let values = session
                    .accumulators
                    .iter_mut()
                    .map(|a| a.evaluate()?.to_array())
                    .collect::<DfResult<Vec<_>>>()?;
                output = Some((session.slot, session.first, revision, values));
            }
            if let Some((slot, start, revision, values)) = output {
                let key = self.key_sessions(slot)?.key.clone();
                let keys = self.key_columns(&key)?;
                let aggregated =
                    plan.aggregate_output(window_column(start, end, 1), keys, values)?;
                let batch = plan.finish(aggregated)?;
                fired.push((
                    key,
                    Fired {
                        start,
                        end,
                        revision,
                        batch,
                    },
                ));
            }
            if end.saturating_add(lateness) <= watermark {
                self.remove(id)?;
            }
        }
        fired.sort_by(|(a_key, a), (b_key, b)| {
            (a.start, a.end, a_key).cmp(&(b.start, b.end, b_key))
        });
        Ok(fired.into_iter().map(|(_, fired)| fired).collect())
    }

    fn remove(&mut self, id: usize) -> DfResult<()> {
        let session = self.sessions[id]
            .take()
            .ok_or_else(|| internal_datafusion_err!("session {id} does not exist"))?;
        self.free_sessions.push(id);
        let slot = session.slot;
        let entry = self.key_sessions(slot)?;
        entry.sessions.retain(|&other| other != id);
        if entry.sessions.is_empty() {
            let key = entry.key.clone();
            self.slots.remove(&key);
            self.keys[slot] = None;
            self.free_keys.push(slot);
        }
        Ok(())
    }

    pub(crate) fn open_windows(&self) -> usize {
        self.sessions.iter().flatten().count()
    }

    pub(crate) fn active_groups(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn state_bytes(&self) -> usize {
        let sessions: usize = self
            .sessions
            .iter()
            .flatten()
            .map(|s| {
                std::mem::size_of::<Session>()
                    + s.accumulators.iter().map(|a| a.size()).sum::<usize>()
            })
            .sum();
        let keys: usize = self
            .keys
            .iter()
            .flatten()
            .map(|k| {
                // The key is stored twice: in the map and in its slot.
                2 * k.key.len()
                    + std::mem::size_of::<KeySessions>()
                    + k.sessions.capacity() * std::mem::size_of::<usize>()
            })
            .sum();
        sessions + keys + self.converter.size()
    }

    /// The sessions as snapshot rows (see [`snapshot_schema`]), ordered by start and key.
    pub(crate) fn snapshot(&mut self, plan: &DetectorPlan) -> DfResult<RecordBatch> {
        let schema = snapshot_schema(plan)?;
        let mut order = Vec::new();
        for (id, session) in self.sessions.iter().enumerate() {
            if let Some(session) = session {
                let key = self.keys[session.slot]
                    .as_ref()
                    .map(|k| k.key.clone())
                    .ok_or_else(|| internal_datafusion_err!("session without a key"))?;
                order.push((session.first, key, id));
            }
        }
        order.sort_unstable();
        let mut starts = Int64Builder::new();
        let mut ends = Int64Builder::new();
        let mut emitted = Int64Builder::new();
        let mut dirty = BooleanBuilder::new();
        let widths = state_widths(plan)?;
        let mut states: Vec<Vec<Vec<ScalarValue>>> =
            widths.iter().map(|&w| vec![Vec::new(); w]).collect();
        let parser = self.converter.parser();
        let mut rows = Vec::new();
        for (_, key, id) in &order {
            rows.push(parser.parse(key));
            let session = self.sessions[*id]
                .as_mut()
                .ok_or_else(|| internal_datafusion_err!("session {id} does not exist"))?;
            starts.append_value(session.first);
            ends.append_value(session.last + self.gap);
            emitted.append_option(session.emitted.map(i64::from));
            dirty.append_value(session.dirty);
            for (accumulator, columns) in session.accumulators.iter_mut().zip(&mut states) {
                for (value, column) in accumulator.state()?.into_iter().zip(columns.iter_mut()) {
                    column.push(value);
                }
            }
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(starts.finish()),
            Arc::new(ends.finish()),
            Arc::new(emitted.finish()),
            Arc::new(dirty.finish()),
        ];
        if self.has_keys {
            columns.extend(self.converter.convert_rows(rows)?);
        }
        for (column, field) in states
            .into_iter()
            .flatten()
            .zip(schema.fields().iter().skip(columns.len()))
        {
            columns.push(if column.is_empty() {
                arrow::array::new_empty_array(field.data_type())
            } else {
                ScalarValue::iter_to_array(column)?
            });
        }
        Ok(RecordBatch::try_new(schema, columns)?)
    }

    /// Rebuilds the sessions of a snapshot.
    pub(crate) fn restore(&mut self, plan: &DetectorPlan, state: &RecordBatch) -> DfResult<()> {
        let widths = state_widths(plan)?;
        let key_count = plan.key_schema().fields().len();
        let starts = state.column(0).as_primitive::<Int64Type>();
        let ends = state.column(1).as_primitive::<Int64Type>();
        let emitted = state.column(2).as_primitive::<Int64Type>();
        let dirty = state.column(3).as_boolean();
        let keys = &state.columns()[SNAPSHOT_PREFIX..SNAPSHOT_PREFIX + key_count];
        let converted = if key_count == 0 {
            None
        } else {
            Some(self.converter.convert_columns(keys)?)
        };
        for row in 0..state.num_rows() {
            let slot = match &converted {
                Some(rows) => self.slot(rows.row(row).data()),
                None => self.slot(&[]),
            };
            let part = state.slice(row, 1);
            let mut session =
                Session::new(plan, slot, starts.value(row), ends.value(row) - self.gap)?;
            for (accumulator, columns) in session.accumulators.iter_mut().zip(split_states(
                &part,
                SNAPSHOT_PREFIX + key_count,
                &widths,
            )) {
                accumulator.merge_batch(&columns)?;
            }
            session.emitted = revision(emitted, row)?;
            session.dirty = dirty.value(row);
            let id = self.insert_session(session);
            self.key_sessions(slot)?.sessions.push(id);
        }
        Ok(())
    }
}
