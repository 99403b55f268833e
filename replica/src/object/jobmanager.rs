//! `JobManager()`: ConCoord's example job list. `schedule(job)` appends, `deschedule(job)`
//! removes the first equal job (ValueError as Python's `list.remove` when absent),
//! `list_jobs()` returns them in scheduling order. Jobs are any msgpack value.

use super::args::{arity, py_str, value_at};
use super::{CallResult, ObjectError, SimpleObject};
use crate::command::Value;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct JobManager {
    jobs: Vec<Value>,
}

impl SimpleObject for JobManager {
    const CLASS: &'static str = "JobManager";
    const READ_ONLY: &'static [&'static str] = &["list_jobs"];

    fn call(&mut self, method: &str, args: &[Value]) -> CallResult {
        match method {
            "schedule" => {
                arity(method, args, &["job"], 1)?;
                self.jobs.push(value_at(args, 0, "job")?);
                Ok(Value::Nil)
            }
            "deschedule" => {
                arity(method, args, &["job"], 1)?;
                let job = value_at(args, 0, "job")?;
                let at = self
                    .jobs
                    .iter()
                    .position(|j| *j == job)
                    .ok_or_else(|| ObjectError::value("list.remove(x): x not in list"))?;
                self.jobs.remove(at);
                Ok(Value::Nil)
            }
            "list_jobs" => {
                arity(method, args, &[], 0)?;
                Ok(Value::Array(self.jobs.clone()))
            }
            _ => Err(ObjectError::no_method(Self::CLASS, method)),
        }
    }

    fn show(&self) -> String {
        self.jobs.iter().map(py_str).collect::<Vec<_>>().join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::tests_support::*;

    fn call(j: &mut JobManager, method: &str, args: &[Value]) -> Outcome {
        j.invoke(c(1, 1), method, args, &mut Effects::default())
    }

    #[test]
    fn schedule_deschedule_list() {
        let mut j = JobManager::from_args(&[]).unwrap();
        assert_eq!(call(&mut j, "schedule", &[v("build")]), ok(Value::Nil));
        assert_eq!(call(&mut j, "schedule", &[v("test")]), ok(Value::Nil));
        assert_eq!(call(&mut j, "schedule", &[v("build")]), ok(Value::Nil));
        assert_eq!(j.describe(), "build test build");
        assert_eq!(call(&mut j, "deschedule", &[v("build")]), ok(Value::Nil));
        assert_eq!(
            call(&mut j, "list_jobs", &[]),
            ok(Value::Array(vec![v("test"), v("build")]))
        );
    }

    #[test]
    fn errors() {
        let mut j = JobManager::default();
        assert_eq!(
            call(&mut j, "deschedule", &[v("x")]),
            err("ValueError", "list.remove(x): x not in list")
        );
        assert_eq!(
            call(&mut j, "schedule", &[v(1), v(2)]),
            err(
                "TypeError",
                "schedule() takes 1 positional argument but 2 were given"
            )
        );
        assert_eq!(
            call(&mut j, "update", &[]),
            err(
                "AttributeError",
                "'JobManager' object has no attribute 'update'"
            )
        );
        assert!(JobManager::from_args(&[v(1)]).is_err());
    }

    #[test]
    fn save_restore() {
        let mut j = JobManager::default();
        call(&mut j, "schedule", &[Value::Array(vec![v("job"), v(3)])]);
        assert_eq!(JobManager::restore(&j.save().unwrap()).unwrap(), j);
    }
}
