//! What DynamoDB would bill for the writes the code makes: a client interceptor records every
//! write (its item, whether its condition held), and a model of the table applies DynamoDB's
//! published rules to count write units and the partition keys written, in the table and in
//! each global secondary index.
//!
//! The rules (DynamoDB developer guide, "Read/write capacity mode" and "Provisioned
//! throughput considerations for Global Secondary Indexes"):
//! - a write costs one unit per KB (rounded up) of the larger of the item before and after;
//!   a write whose condition fails costs the same, and changes nothing;
//! - an index entry is the index's keys, the table's keys, the projected attributes and 100
//!   bytes; putting one costs a unit per KB of it, deleting one a unit per KB of the old one;
//! - an item whose index keys change is a delete and a put in that index; one whose keys stay
//!   and whose projected attributes change is one put; one where neither changes costs the
//!   index nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemInput;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemInput;
use aws_sdk_dynamodb::operation::put_item::PutItemInput;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsInput;
use aws_sdk_dynamodb::operation::update_item::UpdateItemInput;
use aws_sdk_dynamodb::types::{AttributeValue, ProjectionType};
use aws_smithy_types::config_bag::{Storable, StoreReplace};

type Item = HashMap<String, AttributeValue>;

/// A write the code asked for, kept between the call and its answer.
#[derive(Debug, Clone)]
enum Write {
    Put {
        item: Item,
    },
    Delete {
        key: Item,
    },
    /// Any other write: the model does not price it, so a measured path must not make one.
    Other(String),
}

impl Storable for Write {
    type Storer = StoreReplace<Self>;
}

/// The writes made through one client, in the order they were answered.
#[derive(Debug, Default, Clone)]
pub struct Recorder {
    done: Arc<Mutex<Vec<(Write, bool)>>>,
}

impl Recorder {
    /// A DynamoDB client like `client`, whose writes this recorder sees.
    pub fn client(&self, client: &aws_sdk_dynamodb::Client) -> aws_sdk_dynamodb::Client {
        let config = client
            .config()
            .to_builder()
            .interceptor(self.clone())
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }

    /// Forgets what was recorded so far.
    pub fn clear(&self) {
        self.done.lock().expect("the recorder").clear();
    }

    fn take(&self) -> Vec<(Write, bool)> {
        std::mem::take(&mut *self.done.lock().expect("the recorder"))
    }
}

impl Intercept for Recorder {
    fn name(&self) -> &'static str {
        "flowgate-capacity-recorder"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let input = context.input();
        let write = if let Some(put) = input.downcast_ref::<PutItemInput>() {
            Some(Write::Put {
                item: put.item().cloned().unwrap_or_default(),
            })
        } else if let Some(delete) = input.downcast_ref::<DeleteItemInput>() {
            Some(Write::Delete {
                key: delete.key().cloned().unwrap_or_default(),
            })
        } else if input.downcast_ref::<UpdateItemInput>().is_some() {
            Some(Write::Other("UpdateItem".into()))
        } else if input.downcast_ref::<BatchWriteItemInput>().is_some() {
            Some(Write::Other("BatchWriteItem".into()))
        } else if input.downcast_ref::<TransactWriteItemsInput>().is_some() {
            Some(Write::Other("TransactWriteItems".into()))
        } else {
            None
        };
        if let Some(write) = write {
            cfg.interceptor_state().store_put(write);
        }
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        if let Some(write) = cfg.load::<Write>().cloned() {
            let held = matches!(context.output_or_error(), Some(Ok(_)));
            let failed_condition = match context.output_or_error() {
                Some(Err(e)) => format!("{e:?}").contains("ConditionalCheckFailed"),
                _ => false,
            };
            // A write that failed for another reason (throttled, unreachable) is retried by
            // the caller: it is not a write of the design, and it is not priced.
            if held || failed_condition {
                self.done.lock().expect("the recorder").push((write, held));
            }
        }
        Ok(())
    }
}

/// An index of the table: its key attributes and what it projects.
#[derive(Debug, Clone)]
struct Index {
    name: String,
    hash: String,
    range: Option<String>,
    /// `None`: every attribute.
    projected: Option<Vec<String>>,
}

/// The table's shape, read from DynamoDB itself.
#[derive(Debug, Clone)]
pub struct Shape {
    hash: String,
    range: Option<String>,
    indexes: Vec<Index>,
}

impl Shape {
    /// The shape `table` was created with.
    pub async fn of(client: &aws_sdk_dynamodb::Client, table: &str) -> Self {
        let out = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .expect("describe the table");
        let t = out.table().expect("a table");
        let keys = |schema: &[aws_sdk_dynamodb::types::KeySchemaElement]| {
            let hash = schema
                .iter()
                .find(|k| k.key_type().as_str() == "HASH")
                .map(|k| k.attribute_name().to_owned())
                .expect("a hash key");
            let range = schema
                .iter()
                .find(|k| k.key_type().as_str() == "RANGE")
                .map(|k| k.attribute_name().to_owned());
            (hash, range)
        };
        let (hash, range) = keys(t.key_schema());
        let indexes = t
            .global_secondary_indexes()
            .iter()
            .map(|g| {
                let (ihash, irange) = keys(g.key_schema());
                let projection = g.projection().expect("a projection");
                let projected = match projection.projection_type() {
                    Some(ProjectionType::All) => None,
                    Some(ProjectionType::KeysOnly) => Some(Vec::new()),
                    _ => Some(projection.non_key_attributes().to_vec()),
                };
                Index {
                    name: g.index_name().unwrap_or_default().to_owned(),
                    hash: ihash,
                    range: irange,
                    projected,
                }
            })
            .collect();
        Self {
            hash,
            range,
            indexes,
        }
    }
}

/// What a run of writes cost.
#[derive(Debug, Default, Clone)]
pub struct Bill {
    /// Write units on the table.
    pub table_units: u64,
    /// Write units per index.
    pub index_units: BTreeMap<String, u64>,
    /// Writes per partition key, table and indexes apart (`table:pk`, `gsi1:pk`).
    pub keys: BTreeMap<String, u64>,
    /// Writes of any kind.
    pub writes: u64,
    /// Writes the model does not price (they fail a measured path).
    pub unpriced: Vec<String>,
}

impl Bill {
    /// Every write unit.
    pub fn units(&self) -> u64 {
        self.table_units + self.index_units.values().sum::<u64>()
    }

    /// The partition key written most, and its share of every key-write.
    pub fn hottest(&self) -> Option<(&str, f64)> {
        let total: u64 = self.keys.values().sum();
        self.keys
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(k, n)| (k.as_str(), *n as f64 / total.max(1) as f64))
    }
}

/// The table as the recorded writes left it, and what they cost.
pub struct Model {
    shape: Shape,
    items: HashMap<(String, String), Item>,
}

/// An item's size as DynamoDB counts it: the adapter's own rule.
pub use flowgate_aws::items::item_size;

fn units(bytes: usize) -> u64 {
    bytes.div_ceil(1024).max(1) as u64
}

fn text(item: &Item, name: &str) -> Option<String> {
    match item.get(name)? {
        AttributeValue::S(s) => Some(s.clone()),
        AttributeValue::N(n) => Some(n.clone()),
        other => Some(format!("{other:?}")),
    }
}

impl Model {
    /// An empty table of this shape.
    pub fn new(shape: Shape) -> Self {
        Self {
            shape,
            items: HashMap::new(),
        }
    }

    fn key_of(&self, item: &Item) -> (String, String) {
        let hash = text(item, &self.shape.hash).expect("an item has its hash key");
        let range = self
            .shape
            .range
            .as_deref()
            .and_then(|r| text(item, r))
            .unwrap_or_default();
        (hash, range)
    }

    /// The item's entry in `index`: its keys there, and its size. `None` when the item is not
    /// in the index (it lacks a key attribute: the index is sparse).
    fn entry(&self, index: &Index, item: &Item) -> Option<((String, String), Item)> {
        let hash = text(item, &index.hash)?;
        let range = match &index.range {
            Some(r) => text(item, r)?,
            None => String::new(),
        };
        let mut keep: Vec<&str> = vec![&index.hash, &self.shape.hash];
        keep.extend(index.range.as_deref());
        keep.extend(self.shape.range.as_deref());
        let projected: Item = item
            .iter()
            .filter(|(name, _)| match &index.projected {
                None => true,
                Some(names) => keep.contains(&name.as_str()) || names.contains(name),
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Some(((hash, range), projected))
    }

    /// Applies the recorded writes in order, and bills them.
    pub fn bill(&mut self, recorder: &Recorder) -> Bill {
        let mut bill = Bill::default();
        for (write, held) in recorder.take() {
            bill.writes += 1;
            let (new, key) = match write {
                Write::Put { item, .. } => {
                    let key = self.key_of(&item);
                    (Some(item), key)
                }
                Write::Delete { key, .. } => (None, self.key_of(&key)),
                Write::Other(op) => {
                    bill.unpriced.push(op);
                    continue;
                }
            };
            let old = self.items.get(&key).cloned();
            let larger = old
                .iter()
                .chain(new.iter())
                .map(item_size)
                .max()
                .unwrap_or(0);
            bill.table_units += units(larger);
            *bill.keys.entry(format!("table:{}", key.0)).or_default() += 1;
            if !held {
                continue;
            }
            for index in &self.shape.indexes {
                let before = old.as_ref().and_then(|o| self.entry(index, o));
                let after = new.as_ref().and_then(|n| self.entry(index, n));
                let mut spend = |partition: &str, bytes: usize| {
                    *bill.index_units.entry(index.name.clone()).or_default() += units(bytes + 100);
                    *bill
                        .keys
                        .entry(format!("{}:{partition}", index.name))
                        .or_default() += 1;
                };
                match (before, after) {
                    (None, None) => {}
                    (None, Some((k, e))) => spend(&k.0, item_size(&e)),
                    (Some((k, e)), None) => spend(&k.0, item_size(&e)),
                    (Some((k0, e0)), Some((k1, e1))) if k0 != k1 => {
                        spend(&k0.0, item_size(&e0));
                        spend(&k1.0, item_size(&e1));
                    }
                    (Some(_), Some((k, e1))) => {
                        let (_, e0) = self
                            .entry(index, old.as_ref().expect("an old item"))
                            .expect("its entry");
                        if e0 != e1 {
                            spend(&k.0, item_size(&e1));
                        }
                    }
                }
            }
            match new {
                Some(item) => self.items.insert(key, item),
                None => self.items.remove(&key),
            };
        }
        bill
    }
}
