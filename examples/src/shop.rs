//! A shop as a system of applications: Orders, Reservations and Payments.
//! Orders leads Reservations, which leads Payments, which Orders follows:
//! `[Orders, Reservations, Payments, Orders]`. Each order placed is
//! reserved, then paid, then marked paid, each step by a policy.

use std::sync::Arc;

use annals::prelude::*;
use annals::system::{Policies, System};
use serde::{Deserialize, Serialize};

/// An order of items.
#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    /// What was ordered.
    pub items: Vec<String>,
    /// Whether it has been paid.
    pub paid: bool,
}

#[aggregate]
impl Order {
    /// Places an order.
    #[event("Placed")]
    pub fn place(items: Vec<String>) -> Self {
        Order { items, paid: false }
    }

    /// Marks the order paid.
    #[event("Paid")]
    pub fn mark_paid(&mut self) {
        self.paid = true;
    }
}

/// The stock reserved for one order.
#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reservation {
    /// The order.
    pub order_id: Uuid,
    /// How many items.
    pub items: usize,
}

#[aggregate]
impl Reservation {
    /// Reserves stock for an order.
    #[event("Made")]
    pub fn make(order_id: Uuid, items: usize) -> Self {
        Reservation { order_id, items }
    }

    /// One reservation per order.
    pub fn create_id(order_id: &Uuid) -> Uuid {
        Uuid::new_v5(
            &Uuid::NAMESPACE_OID,
            format!("reservation/{order_id}").as_bytes(),
        )
    }
}

/// The payment of one order.
#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Payment {
    /// The order.
    pub order_id: Uuid,
    /// The amount, in cents.
    pub amount: u64,
}

#[aggregate]
impl Payment {
    /// Takes a payment for an order.
    #[event("Taken")]
    pub fn take(order_id: Uuid, amount: u64) -> Self {
        Payment { order_id, amount }
    }

    /// One payment per order.
    pub fn create_id(order_id: &Uuid) -> Uuid {
        Uuid::new_v5(
            &Uuid::NAMESPACE_OID,
            format!("payment/{order_id}").as_bytes(),
        )
    }
}

/// The price of a reservation, in cents: 250 per item.
pub fn price(items: usize) -> u64 {
    250 * items as u64
}

/// Reservations' policy: reserve stock for each order placed.
pub fn reserve() -> Policies {
    Policies::new().on::<Order>(|placed, processing| {
        if let OrderEvent::Placed { items } = &placed.event {
            let mut reservation = Reservation::make(placed.originator_id, items.len());
            processing.save(&mut reservation)?;
        }
        Ok(())
    })
}

/// Payments' policy: take payment for each reservation made.
pub fn pay() -> Policies {
    Policies::new().on::<Reservation>(|made, processing| {
        let ReservationEvent::Made { order_id, items } = &made.event;
        processing.save(&mut Payment::take(*order_id, price(*items)))
    })
}

/// Orders' policy: mark each paid order paid.
pub fn mark_paid() -> Policies {
    Policies::new().on::<Payment>(|taken, processing| {
        let PaymentEvent::Taken { order_id, .. } = &taken.event;
        let mut order: Order = processing.app().get(*order_id)?;
        if !order.paid {
            order.mark_paid();
            processing.save(&mut order)?;
        }
        Ok(())
    })
}

/// The shop: its three applications and the system they make.
#[derive(Debug, Clone)]
pub struct Shop {
    /// Orders: leads Reservations, follows Payments.
    pub orders: Arc<Application>,
    /// Reservations: follows Orders.
    pub reservations: Arc<Application>,
    /// Payments: follows Reservations.
    pub payments: Arc<Application>,
    /// `[Orders, Reservations, Payments, Orders]`.
    pub system: Arc<System>,
}

impl Shop {
    /// The shop's applications, each made by `make` from its role's name
    /// (`"Orders"`, `"Reservations"`, `"Payments"`), wired as a system.
    pub fn new(mut make: impl FnMut(&str) -> annals::Result<Application>) -> annals::Result<Self> {
        let orders = Arc::new(make("Orders")?);
        let reservations = Arc::new(make("Reservations")?);
        let payments = Arc::new(make("Payments")?);
        let system = System::builder()
            .process(orders.clone(), mark_paid())
            .process(reservations.clone(), reserve())
            .process(payments.clone(), pay())
            .pipe([&orders, &reservations, &payments, &orders])
            .build()?;
        Ok(Self {
            orders,
            reservations,
            payments,
            system: Arc::new(system),
        })
    }

    /// Places an order; returns its id.
    pub fn place_order(&self, items: &[&str]) -> annals::Result<Uuid> {
        let mut order = Order::place(items.iter().map(|s| (*s).to_owned()).collect());
        self.orders.save(&mut order)?;
        Ok(order.id())
    }

    /// Whether every order placed so far is reserved, paid and marked
    /// paid, each exactly once; an error says what is wrong.
    pub fn check_settled(&self, orders: &[Uuid]) -> Result<(), String> {
        let err = |e: annals::Error| e.to_string();
        for id in orders {
            let order: Order = self.orders.get(*id).map_err(err)?;
            if !order.paid || order.version() != 2 {
                return Err(format!(
                    "order {id}: paid {}, version {}",
                    order.paid,
                    order.version()
                ));
            }
            let reservation: Reservation = self
                .reservations
                .get(Reservation::create_id(id))
                .map_err(err)?;
            if reservation.order_id != *id || reservation.version() != 1 {
                return Err(format!("reservation of {id}: {reservation:?}"));
            }
            let payment: Payment = self.payments.get(Payment::create_id(id)).map_err(err)?;
            if payment.amount != price(order.items.len()) {
                return Err(format!("payment of {id}: {payment:?}"));
            }
        }
        let n = orders.len() as u64;
        let count = |app: &Application| stored_events(app).map_err(err);
        let counts = (
            count(&self.orders)?,
            count(&self.reservations)?,
            count(&self.payments)?,
        );
        if counts != (2 * n, n, n) {
            return Err(format!(
                "events stored (orders, reservations, payments): {counts:?}, expected {:?}",
                (2 * n, n, n)
            ));
        }
        Ok(())
    }
}

/// How many events `app` has stored: its notifications counted (its
/// highest notification id is no count: ids may have gaps on PostgreSQL,
/// where a failed transaction wastes the ids it drew).
///
/// # Errors
///
/// The store's errors.
pub fn stored_events(app: &Application) -> annals::Result<u64> {
    let mut count = 0;
    for notification in annals::log::NotificationLogReader::new(app).read(1) {
        notification?;
        count += 1;
    }
    Ok(count)
}
