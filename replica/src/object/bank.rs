//! `Bank()`: ConCoord's example bank of accounts. Account numbers are ints or strings.
//!
//! As in ConCoord 1.1: `open` returns True, or False for an existing account; amounts go
//! through `float(amount)`, so balances are floats once money moved (a new account holds the
//! int 0); `deposit` and `debit` return the new balance; an unknown account is a bare
//! `KeyError`. `debit` returns False when the balance is too low — 1.1's test was inverted
//! (it refused small debits and let large ones overdraw); we keep what it meant.

use super::args::{Key, Number, arity, float_at, key_at};
use super::{CallResult, ObjectError, SimpleObject};
use crate::command::Value;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Bank {
    accounts: BTreeMap<Key, Number>,
}

/// 1.1 raises a bare `KeyError` (no message) for an unknown account.
fn no_account() -> ObjectError {
    ObjectError::key("")
}

impl Bank {
    fn account(&mut self, accntno: &Key) -> Result<&mut Number, ObjectError> {
        self.accounts.get_mut(accntno).ok_or_else(no_account)
    }
}

impl SimpleObject for Bank {
    const CLASS: &'static str = "Bank";
    const READ_ONLY: &'static [&'static str] = &["balance"];

    fn call(&mut self, method: &str, args: &[Value]) -> CallResult {
        match method {
            "open" => {
                arity(method, args, &["accntno"], 1)?;
                let accntno = key_at(args, 0, "accntno")?;
                if self.accounts.contains_key(&accntno) {
                    return Ok(Value::Boolean(false));
                }
                self.accounts.insert(accntno, Number::Int(0));
                Ok(Value::Boolean(true))
            }
            "close" => {
                arity(method, args, &["accntno"], 1)?;
                let accntno = key_at(args, 0, "accntno")?;
                self.accounts.remove(&accntno).ok_or_else(no_account)?;
                Ok(Value::Boolean(true))
            }
            "deposit" => {
                arity(method, args, &["accntno", "amount"], 2)?;
                let accntno = key_at(args, 0, "accntno")?;
                let balance = self.account(&accntno)?;
                let amount = float_at(args, 1, "amount")?;
                *balance = Number::Float(balance.as_f64() + amount);
                Ok(balance.to_value())
            }
            "debit" => {
                arity(method, args, &["accntno", "amount"], 2)?;
                let accntno = key_at(args, 0, "accntno")?;
                let balance = self.account(&accntno)?;
                let amount = float_at(args, 1, "amount")?;
                if balance.as_f64() < amount {
                    return Ok(Value::Boolean(false));
                }
                *balance = Number::Float(balance.as_f64() - amount);
                Ok(balance.to_value())
            }
            "balance" => {
                arity(method, args, &["accntno"], 1)?;
                let accntno = key_at(args, 0, "accntno")?;
                Ok(self.account(&accntno)?.to_value())
            }
            _ => Err(ObjectError::no_method(Self::CLASS, method)),
        }
    }

    /// One line per account, as 1.1's `Account.__str__`.
    fn show(&self) -> String {
        self.accounts
            .iter()
            .map(|(no, balance)| format!("Account {no}: balance = ${:.2}", balance.as_f64()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::tests_support::*;

    fn call(bank: &mut Bank, method: &str, args: &[Value]) -> Outcome {
        bank.invoke(c(1, 1), method, args, &mut Effects::default())
    }

    #[test]
    fn accounts_lifecycle() {
        let mut b = Bank::from_args(&[]).unwrap();
        assert_eq!(call(&mut b, "open", &[v("alice")]), ok(true));
        assert_eq!(call(&mut b, "open", &[v("alice")]), ok(false));
        assert_eq!(call(&mut b, "open", &[v(7)]), ok(true));
        assert_eq!(call(&mut b, "balance", &[v(7)]), ok(0));
        assert_eq!(call(&mut b, "deposit", &[v("alice"), v(100)]), ok(100.0));
        assert_eq!(call(&mut b, "deposit", &[v("alice"), v("2.5")]), ok(102.5));
        assert_eq!(call(&mut b, "debit", &[v("alice"), v(30)]), ok(72.5));
        assert_eq!(call(&mut b, "balance", &[v("alice")]), ok(72.5));
        assert_eq!(call(&mut b, "debit", &[v("alice"), v(72.5)]), ok(0.0));
        assert_eq!(call(&mut b, "deposit", &[v(7), v(5)]), ok(5.0));
        assert_eq!(
            b.describe(),
            "Account 7: balance = $5.00\nAccount alice: balance = $0.00"
        );
        assert_eq!(call(&mut b, "close", &[v("alice")]), ok(true));
        assert_eq!(call(&mut b, "balance", &[v("alice")]), err("KeyError", ""));
    }

    #[test]
    fn a_debit_above_the_balance_returns_false_and_changes_nothing() {
        let mut b = Bank::default();
        call(&mut b, "open", &[v("x")]);
        call(&mut b, "deposit", &[v("x"), v(10)]);
        assert_eq!(call(&mut b, "debit", &[v("x"), v(10.5)]), ok(false));
        assert_eq!(call(&mut b, "balance", &[v("x")]), ok(10.0));
        assert_eq!(call(&mut b, "debit", &[v("x"), v(3)]), ok(7.0));
    }

    #[test]
    fn errors() {
        let mut b = Bank::default();
        assert_eq!(call(&mut b, "close", &[v("x")]), err("KeyError", ""));
        assert_eq!(call(&mut b, "deposit", &[v(3), v(1)]), err("KeyError", ""));
        assert_eq!(call(&mut b, "debit", &[v("x"), v(1)]), err("KeyError", ""));
        call(&mut b, "open", &[v("x")]);
        assert_eq!(
            call(&mut b, "deposit", &[v("x"), v("ten")]),
            err("ValueError", "could not convert string to float: 'ten'")
        );
        assert_eq!(
            call(&mut b, "debit", &[v("x"), Value::Array(vec![])]),
            err("TypeError", "expected float for 'amount', got list")
        );
        assert_eq!(
            call(&mut b, "debit", &[v("x")]),
            err(
                "TypeError",
                "debit() missing 1 required positional argument: 'amount'"
            )
        );
        assert_eq!(
            call(&mut b, "open", &[Value::Array(vec![])]),
            err("TypeError", "expected str or int for 'accntno', got list")
        );
        assert_eq!(call(&mut b, "balance", &[v("x")]), ok(0));
        assert_eq!(
            call(&mut b, "transfer", &[]),
            err(
                "AttributeError",
                "'Bank' object has no attribute 'transfer'"
            )
        );
        assert!(Bank::from_args(&[v(1)]).is_err());
    }

    #[test]
    fn save_restore() {
        let mut b = Bank::default();
        call(&mut b, "open", &[v("x")]);
        call(&mut b, "open", &[v(1)]);
        call(&mut b, "deposit", &[v("x"), v(9)]);
        assert_eq!(Bank::restore(&b.save().unwrap()).unwrap(), b);
    }
}
