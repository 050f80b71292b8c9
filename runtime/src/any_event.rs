//! One typed view over several aggregates' events: an enum that derives
//! [`AnyEvent`](macro@AnyEvent), one variant per aggregate type, decodes
//! any stored event by its topic. A projection, a policy or a subscription
//! over a log that holds several types matches on it, and the compiler
//! checks the match: every aggregate type, and within each, every event.

use crate::domain::{Aggregate, DomainEvent};
use crate::error::{Error, Result};

/// Derives [`trait@AnyEvent`] for an enum whose variants each hold one
/// aggregate's events, `Order(DomainEvent<Order>)`. A stored event is
/// decoded as the aggregate whose topics include its topic (aliases and
/// Python's topics too). A topic of none of them is an
/// [`Error::UnknownTopic`], unless one variant is marked `#[other]`: a
/// unit variant, or one holding the topic (`String`).
///
/// ```
/// use annals::prelude::*;
/// use annals::{AnyEvent, DomainEvent};
///
/// #[aggregate]
/// #[derive(Debug)]
/// pub struct Order { pub item: String }
/// #[aggregate]
/// impl Order {
///     #[event("Placed")]
///     pub fn place(item: String) -> Self { Order { item } }
/// }
///
/// #[aggregate]
/// #[derive(Debug)]
/// pub struct Payment { pub amount: u64 }
/// #[aggregate]
/// impl Payment {
///     #[event("Taken")]
///     pub fn take(amount: u64) -> Self { Payment { amount } }
///     #[event("Refunded")]
///     pub fn refund(&mut self) {}
/// }
///
/// #[derive(Debug, AnyEvent)]
/// enum ShopEvent {
///     Order(DomainEvent<Order>),
///     Payment(DomainEvent<Payment>),
/// }
///
/// let app = Application::builder("Shop").build()?;
/// app.save(&mut Order::place("tea".into()))?;
/// let mut payment = Payment::take(3);
/// payment.refund();
/// app.save(&mut payment)?;
///
/// let mut refunds = 0;
/// for notification in app.notifications(1, 10)? {
///     match app.mapper().decode_any::<ShopEvent>(&notification.event)? {
///         ShopEvent::Order(e) => match e.event {
///             OrderEvent::Placed { item } => assert_eq!(item, "tea"),
///         },
///         ShopEvent::Payment(e) => match e.event {
///             PaymentEvent::Taken { amount } => assert_eq!(amount, 3),
///             PaymentEvent::Refunded {} => refunds += 1,
///         },
///     }
/// }
/// assert_eq!(refunds, 1);
/// # Ok::<(), annals::Error>(())
/// ```
///
/// Each mistake is a compile error at the offending tokens: on a struct,
/// a generic enum, an enum with no aggregate variant, a variant that does
/// not hold one `DomainEvent<A>` (its type must be one), two variants of
/// one aggregate type, or `#[other]` twice or on a variant that holds
/// anything but the topic.
pub use annals_macros::AnyEvent;

/// Any of several aggregate types' events: see
/// [`AnyEvent`](macro@AnyEvent), which derives it.
pub trait AnyEvent: Sized {
    /// The enum's name, as errors say it.
    const NAME: &'static str;

    /// Decodes, with `decoder`, a stored event whose topic is `topic`.
    #[doc(hidden)]
    fn __decode<D: Decoder>(topic: &str, decoder: D) -> Result<Self>;
}

/// What decodes one stored event as one aggregate type's (the mapper, or
/// a follower's upstream event, which checks hash chains).
#[doc(hidden)]
pub trait Decoder {
    /// The event, as `A`'s.
    ///
    /// # Errors
    ///
    /// Decoding errors.
    fn decode<A: Aggregate>(self) -> Result<DomainEvent<A>>;
}

/// What `#[derive(AnyEvent)]` names (through `annals::__private::any`).
#[doc(hidden)]
pub mod private {
    pub use super::{AnyEvent, Decoder};
    pub use crate::dcb::private::distinct;
    pub use crate::error::Result;

    /// The aggregate type a variant holds the events of.
    #[diagnostic::on_unimplemented(
        message = "a variant of an AnyEvent enum holds `DomainEvent<A>`, not `{Self}`",
        label = "not the events of an aggregate type",
        note = "write the variant as `Order(DomainEvent<Order>)`"
    )]
    pub trait OfAggregate {
        /// That type.
        type Aggregate: crate::Aggregate;

        /// The variant's value (through the trait, so that a variant of
        /// another type is one error, at the trait).
        fn from_events(event: crate::DomainEvent<Self::Aggregate>) -> Self;
    }

    impl<A: crate::Aggregate> OfAggregate for crate::DomainEvent<A> {
        type Aggregate = A;

        fn from_events(event: crate::DomainEvent<A>) -> Self {
            event
        }
    }

    /// Whether `topic` is one of `A`'s events' topics.
    pub fn is_of<A: crate::Aggregate>(topic: &str) -> bool {
        crate::mapper::variant_of::<A>(topic).is_some()
    }

    /// `A`'s name.
    pub const fn name_of<A: crate::Aggregate>() -> &'static str {
        A::NAME
    }

    /// The error of a topic none of the enum's aggregate types has.
    pub fn unknown(topic: &str, view: &'static str) -> crate::Error {
        super::unknown(topic, view)
    }
}

fn unknown(topic: &str, view: &'static str) -> Error {
    Error::UnknownTopic {
        topic: topic.to_owned(),
        aggregate: view,
        owner: None,
    }
}
