//! `Bank()`: ConCoord's example bank of accounts. Account numbers are ints or strings.
//! Amounts are integers (the smallest currency unit), so balances are exact on every
//! replica; ConCoord used floats.
//!
//! `open` returns False for an existing account (as ConCoord did); other methods raise
//! KeyError for an unknown account. `debit` refuses a negative amount or an overdraft with
//! ValueError instead of ConCoord's silent False.

use super::args::{Key, arity, int_at, key_at, py_repr};
use super::{CallResult, ObjectError, SimpleObject};
use crate::command::Value;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Bank {
    accounts: BTreeMap<Key, i64>,
}

impl Bank {
    fn account(&mut self, accntno: &Key) -> Result<&mut i64, ObjectError> {
        self.accounts
            .get_mut(accntno)
            .ok_or_else(|| accntno.key_error())
    }

    fn amount(args: &[Value]) -> Result<i64, ObjectError> {
        let amount = int_at(args, 1, "amount")?;
        if amount < 0 {
            return Err(ObjectError::value(format!(
                "amount must not be negative, got {amount}"
            )));
        }
        Ok(amount)
    }
}

impl SimpleObject for Bank {
    const CLASS: &'static str = "Bank";

    fn call(&mut self, method: &str, args: &[Value]) -> CallResult {
        match method {
            "open" => {
                arity(method, args, &["accntno"], 1)?;
                let accntno = key_at(args, 0, "accntno")?;
                if self.accounts.contains_key(&accntno) {
                    return Ok(Value::Boolean(false));
                }
                self.accounts.insert(accntno, 0);
                Ok(Value::Boolean(true))
            }
            "close" => {
                arity(method, args, &["accntno"], 1)?;
                let accntno = key_at(args, 0, "accntno")?;
                self.accounts
                    .remove(&accntno)
                    .ok_or_else(|| accntno.key_error())?;
                Ok(Value::Boolean(true))
            }
            "deposit" => {
                arity(method, args, &["accntno", "amount"], 2)?;
                let accntno = key_at(args, 0, "accntno")?;
                let amount = Self::amount(args)?;
                let balance = self.account(&accntno)?;
                *balance = balance
                    .checked_add(amount)
                    .ok_or_else(|| ObjectError::new("OverflowError", "balance out of range"))?;
                Ok(Value::from(*balance))
            }
            "debit" => {
                arity(method, args, &["accntno", "amount"], 2)?;
                let accntno = key_at(args, 0, "accntno")?;
                let amount = Self::amount(args)?;
                let balance = self.account(&accntno)?;
                if amount > *balance {
                    return Err(ObjectError::value(format!(
                        "insufficient funds in account {}: balance {}, debit {amount}",
                        py_repr(&accntno.to_value()),
                        *balance
                    )));
                }
                *balance -= amount;
                Ok(Value::from(*balance))
            }
            "balance" => {
                arity(method, args, &["accntno"], 1)?;
                let accntno = key_at(args, 0, "accntno")?;
                Ok(Value::from(*self.account(&accntno)?))
            }
            _ => Err(ObjectError::no_method(Self::CLASS, method)),
        }
    }

    fn show(&self) -> String {
        self.accounts
            .iter()
            .map(|(no, balance)| format!("Account {no}: balance = {balance}"))
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
        assert_eq!(call(&mut b, "deposit", &[v("alice"), v(100)]), ok(100));
        assert_eq!(call(&mut b, "debit", &[v("alice"), v(30)]), ok(70));
        assert_eq!(call(&mut b, "balance", &[v("alice")]), ok(70));
        assert_eq!(call(&mut b, "debit", &[v("alice"), v(70)]), ok(0));
        assert_eq!(call(&mut b, "deposit", &[v(7), v(5)]), ok(5));
        assert_eq!(
            b.describe(),
            "Account 7: balance = 5\nAccount alice: balance = 0"
        );
        assert_eq!(call(&mut b, "close", &[v("alice")]), ok(true));
        assert_eq!(
            call(&mut b, "balance", &[v("alice")]),
            err("KeyError", "'alice'")
        );
    }

    #[test]
    fn errors() {
        let mut b = Bank::default();
        assert_eq!(call(&mut b, "close", &[v("x")]), err("KeyError", "'x'"));
        assert_eq!(call(&mut b, "deposit", &[v(3), v(1)]), err("KeyError", "3"));
        assert_eq!(
            call(&mut b, "debit", &[v("x"), v(1)]),
            err("KeyError", "'x'")
        );
        call(&mut b, "open", &[v("x")]);
        call(&mut b, "deposit", &[v("x"), v(5)]);
        assert_eq!(
            call(&mut b, "debit", &[v("x"), v(6)]),
            err(
                "ValueError",
                "insufficient funds in account 'x': balance 5, debit 6"
            )
        );
        assert_eq!(
            call(&mut b, "deposit", &[v("x"), v(-1)]),
            err("ValueError", "amount must not be negative, got -1")
        );
        assert_eq!(
            call(&mut b, "debit", &[v("x"), v(2.5)]),
            err("TypeError", "expected int for 'amount', got float")
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
        assert_eq!(
            call(&mut b, "deposit", &[v("x"), v(i64::MAX)]),
            err("OverflowError", "balance out of range")
        );
        assert_eq!(call(&mut b, "balance", &[v("x")]), ok(5));
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
