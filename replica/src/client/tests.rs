//! Client behaviour against a scripted fake replica.

use super::fake::{FakeConn, FakeReplica, Handshake, report};
use super::*;
use crate::command::{ClientCommand, Operation, Value};
use crate::net::wire::{ClientFrame, ReplicaFrame, ReplyResult};
use std::time::Duration;

fn opts() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(2),
        call_timeout: Some(Duration::from_secs(5)),
        blocking_timeout: None,
        // Long, so keep-alives only appear in the tests about them.
        keepalive_interval: Duration::from_secs(60),
        keepalive_timeout: Duration::from_secs(60),
        failover_timeout: Duration::from_secs(5),
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(100),
        tls: None,
        token: None,
    }
}

/// Connects to `addrs` while `fake` accepts the session.
async fn connect_via(fake: &mut FakeReplica, addrs: &str, o: ClientOptions) -> (Client, FakeConn) {
    let addrs = addrs.to_string();
    let connecting = tokio::spawn(async move { Client::connect(&addrs, o).await });
    let mut conn = fake.accept().await;
    let open = conn.open_session().await;
    let client = connecting.await.unwrap().unwrap();
    assert_eq!(client.session_id(), open.session);
    (client, conn)
}

async fn connected(fake: &mut FakeReplica) -> (Client, FakeConn) {
    let addr = fake.addr.clone();
    connect_via(fake, &addr, opts()).await
}

fn call_op(object: &str, method: &str, args: Vec<Value>) -> Operation {
    Operation::Call {
        object: object.into(),
        method: method.into(),
        args,
    }
}

/// Starts `client.call(object, method, args)` in the background.
fn spawn_call(
    client: &Client,
    method: &str,
    args: Vec<Value>,
) -> tokio::task::JoinHandle<Result<Value, ClientError>> {
    let client = client.clone();
    let method = method.to_string();
    tokio::spawn(async move { client.call("obj", &method, args).await })
}

async fn done<T>(h: tokio::task::JoinHandle<T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), h)
        .await
        .expect("call did not finish")
        .unwrap()
}

#[tokio::test]
async fn opens_a_session_then_numbers_calls() {
    let mut fake = FakeReplica::start().await;
    let (client, mut conn) = connected(&mut fake).await;
    let call = spawn_call(&client, "increment", vec![]);
    let cmd = conn.request().await;
    assert_eq!(
        cmd,
        ClientCommand {
            session: client.session_id(),
            seq: 1,
            ack: 1,
            op: call_op("obj", "increment", vec![]),
            owner: None,
        }
    );
    conn.ok(&cmd, Value::from(7));
    assert_eq!(done(call).await.unwrap(), Value::from(7));
}

#[tokio::test]
async fn pipelined_replies_are_matched_by_seq() {
    let mut fake = FakeReplica::start().await;
    let (client, mut conn) = connected(&mut fake).await;
    let calls: Vec<_> = (0..3)
        .map(|i| spawn_call(&client, "echo", vec![Value::from(i)]))
        .collect();
    // All three are on the wire before any reply.
    let mut cmds = Vec::new();
    for _ in 0..3 {
        cmds.push(conn.request().await);
    }
    let mut seqs: Vec<u64> = cmds.iter().map(|c| c.seq).collect();
    seqs.sort();
    assert_eq!(seqs, vec![1, 2, 3]);
    for cmd in cmds.iter().rev() {
        let Operation::Call { args, .. } = &cmd.op else {
            panic!("{cmd:?}")
        };
        conn.ok(cmd, args[0].clone());
    }
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(done(call).await.unwrap(), Value::from(i));
    }
}

#[tokio::test]
async fn ack_is_the_lowest_unanswered_seq() {
    let mut fake = FakeReplica::start().await;
    let (client, mut conn) = connected(&mut fake).await;
    let slow = spawn_call(&client, "a", vec![]);
    let a = conn.request().await;
    assert_eq!((a.seq, a.ack), (1, 1));
    let b_call = spawn_call(&client, "b", vec![]);
    let b = conn.request().await;
    assert_eq!((b.seq, b.ack), (2, 1));
    conn.ok(&b, Value::Nil);
    done(b_call).await.unwrap();
    let c_call = spawn_call(&client, "c", vec![]);
    let c = conn.request().await;
    assert_eq!((c.seq, c.ack), (3, 1), "seq 1 is still unanswered");
    conn.ok(&c, Value::Nil);
    conn.ok(&a, Value::Nil);
    done(c_call).await.unwrap();
    done(slow).await.unwrap();
    let d_call = spawn_call(&client, "d", vec![]);
    let d = conn.request().await;
    assert_eq!((d.seq, d.ack), (4, 4));
    conn.ok(&d, Value::Nil);
    done(d_call).await.unwrap();
}

#[tokio::test]
async fn follows_the_not_leader_hint() {
    let mut follower = FakeReplica::start().await;
    let mut leader = FakeReplica::start().await;
    let addr = follower.addr.clone();
    let connecting = tokio::spawn(async move { Client::connect(&addr, opts()).await });
    let mut f = follower.accept().await;
    let open = f.request().await;
    f.reply(
        &open,
        ReplyResult::NotLeader {
            leader: Some(leader.addr.clone()),
        },
    );
    let mut l = leader.accept().await;
    let again = l.open_session().await;
    assert_eq!(again, open, "the same session and seq are re-sent");
    let client = connecting.await.unwrap().unwrap();
    let call = spawn_call(&client, "m", vec![]);
    let cmd = l.request().await;
    l.ok(&cmd, Value::Boolean(true));
    assert_eq!(done(call).await.unwrap(), Value::Boolean(true));
}

#[tokio::test]
async fn without_a_hint_tries_the_next_address() {
    let mut a = FakeReplica::start().await;
    let mut b = FakeReplica::start().await;
    let addrs = format!("{}, {}", a.addr, b.addr);
    let connecting = tokio::spawn(async move { Client::connect(&addrs, opts()).await });
    let mut ca = a.accept().await;
    let open = ca.request().await;
    ca.reply(&open, ReplyResult::NotLeader { leader: None });
    let mut cb = b.accept().await;
    assert_eq!(cb.open_session().await, open);
    connecting.await.unwrap().unwrap();
}

#[tokio::test]
async fn keepalive_not_leader_redirects() {
    let mut a = FakeReplica::start().await;
    let mut b = FakeReplica::start().await;
    let o = ClientOptions {
        keepalive_interval: Duration::from_millis(50),
        ..opts()
    };
    let addr = a.addr.clone();
    let (client, mut ca) = connect_via(&mut a, &addr, o).await;
    loop {
        if let ClientFrame::KeepAlive { .. } = ca.frame().await.unwrap() {
            break;
        }
    }
    ca.send(ReplicaFrame::NotLeader {
        leader: Some(b.addr.clone()),
    });
    let mut cb = b.accept().await;
    loop {
        match cb.frame().await.unwrap() {
            ClientFrame::KeepAlive { session } => {
                assert_eq!(session, client.session_id());
                break;
            }
            ClientFrame::Status => {}
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn reconnects_and_resends_with_the_same_seq() {
    let mut fake = FakeReplica::start().await;
    let (client, mut conn) = connected(&mut fake).await;
    let call = spawn_call(&client, "slow", vec![Value::from(1)]);
    let first = conn.request().await;
    conn.close();
    let mut conn2 = fake.accept().await;
    let again = conn2.request().await;
    assert_eq!(again.session, first.session);
    assert_eq!(again.seq, first.seq);
    assert_eq!(again.op, first.op);
    conn2.ok(&again, Value::from("done"));
    assert_eq!(done(call).await.unwrap(), Value::from("done"));
}

#[tokio::test]
async fn learned_members_are_tried_when_the_seed_dies() {
    let mut a = FakeReplica::start().await;
    let mut b = FakeReplica::start().await;
    let addr = a.addr.clone();
    let connecting = tokio::spawn(async move { Client::connect(&addr, opts()).await });
    let mut ca = a.accept().await;
    // The client asks for the status of every new connection.
    assert!(matches!(ca.frame().await, Some(ClientFrame::Status)));
    ca.send(ReplicaFrame::Status(report(1, &[&a.addr, &b.addr])));
    ca.open_session().await;
    let client = connecting.await.unwrap().unwrap();
    let call = spawn_call(&client, "m", vec![]);
    let cmd = ca.request().await;
    a.stop_listening();
    ca.close();
    let mut cb = b.accept().await;
    let again = cb.request().await;
    assert_eq!((again.session, again.seq), (cmd.session, cmd.seq));
    cb.ok(&again, Value::Nil);
    done(call).await.unwrap();
}

#[tokio::test]
async fn session_expired_fails_in_flight_calls_and_reopens() {
    let mut fake = FakeReplica::start().await;
    let (client, mut conn) = connected(&mut fake).await;
    let old = client.session_id();
    let c1 = spawn_call(&client, "acquire", vec![]);
    let c2 = spawn_call(&client, "x", vec![]);
    let r1 = conn.request().await;
    let _r2 = conn.request().await;
    conn.reply(&r1, ReplyResult::SessionExpired);
    assert_eq!(done(c1).await, Err(ClientError::SessionExpired));
    assert_eq!(done(c2).await, Err(ClientError::SessionExpired));
    let open = conn.open_session().await;
    assert_ne!(open.session, old);
    // Later calls use the new session from seq 1.
    let c3 = spawn_call(&client, "y", vec![]);
    let r3 = conn.request().await;
    assert_eq!((r3.session, r3.seq, r3.ack), (open.session, 1, 1));
    conn.ok(&r3, Value::Nil);
    done(c3).await.unwrap();
    assert_eq!(client.session_id(), open.session);
}

#[tokio::test]
async fn keepalives_are_sent_and_a_dead_session_is_replaced() {
    let mut fake = FakeReplica::start().await;
    let o = ClientOptions {
        keepalive_interval: Duration::from_millis(30),
        ..opts()
    };
    let addr = fake.addr.clone();
    let (client, mut conn) = connect_via(&mut fake, &addr, o).await;
    let session = client.session_id();
    let mut seen = 0;
    while seen < 3 {
        match conn.frame().await.unwrap() {
            ClientFrame::KeepAlive { session: s } => {
                assert_eq!(s, session);
                seen += 1;
                conn.send(ReplicaFrame::KeepAliveAck {
                    session: s,
                    alive: true,
                });
            }
            ClientFrame::Status => {}
            other => panic!("{other:?}"),
        }
    }
    conn.send(ReplicaFrame::KeepAliveAck {
        session,
        alive: false,
    });
    let open = conn.open_session().await;
    assert_ne!(open.session, session);
}

#[tokio::test]
async fn unanswered_keepalives_make_the_client_reconnect() {
    let mut fake = FakeReplica::start().await;
    let o = ClientOptions {
        keepalive_interval: Duration::from_millis(30),
        keepalive_timeout: Duration::from_millis(200),
        ..opts()
    };
    let addr = fake.addr.clone();
    let (_client, _conn) = connect_via(&mut fake, &addr, o).await;
    // Never answered: the client gives up on this connection and opens another.
    let _second = fake.accept().await;
}

#[tokio::test]
async fn a_replica_that_never_answers_is_abandoned() {
    let mut mute = FakeReplica::start().await;
    let mut good = FakeReplica::start().await;
    let o = ClientOptions {
        keepalive_timeout: Duration::from_millis(200),
        ..opts()
    };
    let addrs = format!("{}, {}", mute.addr, good.addr);
    let connecting = tokio::spawn(async move { Client::connect(&addrs, o).await });
    let mut silent = mute.accept().await;
    let open = silent.request().await;
    // No answer: after the keep-alive timeout the client tries the other replica.
    let mut g = good.accept().await;
    assert_eq!(g.open_session().await, open);
    connecting.await.unwrap().unwrap();
}

#[tokio::test]
async fn malformed_frames_are_errors_not_panics() {
    let mut fake = FakeReplica::start().await;
    let (client, mut conn) = connected(&mut fake).await;
    let call = spawn_call(&client, "m", vec![]);
    let first = conn.request().await;
    conn.raw(&[0, 0, 0, 3, 0xc1, 0xc1, 0xc1]);
    let mut conn2 = fake.accept().await;
    let again = conn2.request().await;
    assert_eq!(again.seq, first.seq);
    // An oversized length prefix is dropped the same way.
    conn2.raw(&u32::MAX.to_be_bytes());
    let mut conn3 = fake.accept().await;
    let again = conn3.request().await;
    conn3.ok(&again, Value::from(1));
    assert_eq!(done(call).await.unwrap(), Value::from(1));
}

#[tokio::test]
async fn a_bad_welcome_fails_connect_with_the_reason() {
    let fake = FakeReplica::start_with(Handshake::Garbage).await;
    let err = Client::connect(&fake.addr, opts()).await.unwrap_err();
    let ClientError::NoReplica { tried, last_error } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(tried, &vec![fake.addr.clone()]);
    assert!(last_error.contains("bad welcome"), "{err}");

    let fake = FakeReplica::start_with(Handshake::Refuse).await;
    let err = Client::connect(&fake.addr, opts()).await.unwrap_err();
    assert!(err.to_string().contains("not now"), "{err}");
}

#[tokio::test]
async fn nothing_listening_is_no_replica() {
    let free = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let err = tokio::time::timeout(Duration::from_secs(5), Client::connect(&addr, opts()))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(&err, ClientError::NoReplica { tried, .. } if tried == &vec![addr.clone()]));
    let err = Client::connect("nonsense", opts()).await.unwrap_err();
    assert!(matches!(err, ClientError::InvalidAddress(_)));
}

#[tokio::test]
async fn leaderless_calls_fail_after_the_failover_timeout() {
    let mut fake = FakeReplica::start().await;
    let o = ClientOptions {
        failover_timeout: Duration::from_millis(300),
        ..opts()
    };
    let addr = fake.addr.clone();
    let (client, mut conn) = connect_via(&mut fake, &addr, o).await;
    let call = spawn_call(&client, "acquire", vec![]);
    conn.request().await;
    fake.stop_listening();
    conn.close();
    let err = done(call).await.unwrap_err();
    assert!(matches!(err, ClientError::NoReplica { .. }), "{err}");
}

#[tokio::test]
async fn calls_time_out_and_blocking_calls_do_not() {
    let mut fake = FakeReplica::start().await;
    let o = ClientOptions {
        call_timeout: Some(Duration::from_millis(100)),
        ..opts()
    };
    let addr = fake.addr.clone();
    let (client, mut conn) = connect_via(&mut fake, &addr, o).await;
    let blocking = spawn_call(&client, "acquire", vec![]);
    let quick = spawn_call(&client, "getvalue", vec![]);
    assert_eq!(done(quick).await, Err(ClientError::Timeout));
    let a = conn.request().await;
    let b = conn.request().await;
    let acquire = if matches!(&a.op, Operation::Call { method, .. } if method == "acquire") {
        a
    } else {
        b
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!blocking.is_finished());
    conn.ok(&acquire, Value::Boolean(true));
    assert_eq!(done(blocking).await.unwrap(), Value::Boolean(true));
}

#[tokio::test]
async fn remote_errors_keep_their_python_names() {
    let mut fake = FakeReplica::start().await;
    let (client, mut conn) = connected(&mut fake).await;
    let call = spawn_call(&client, "release", vec![]);
    let cmd = conn.request().await;
    conn.reply(
        &cmd,
        ReplyResult::Err {
            kind: "RuntimeError".into(),
            message: "cannot release un-acquired lock".into(),
        },
    );
    let err = done(call).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "RuntimeError: cannot release un-acquired lock"
    );
}

#[tokio::test]
async fn close_ends_the_session() {
    let mut fake = FakeReplica::start().await;
    let (client, mut conn) = connected(&mut fake).await;
    let other = client.clone();
    let closing = tokio::spawn(async move { other.close().await });
    let cmd = conn.request().await;
    assert_eq!(cmd.op, Operation::CloseSession);
    conn.ok(&cmd, Value::Nil);
    done(closing).await.unwrap();
    assert_eq!(
        client.call("x", "y", vec![]).await,
        Err(ClientError::Closed)
    );
    assert_eq!(client.close().await, Ok(()));
}

#[tokio::test]
async fn dropping_the_last_handle_closes_the_session() {
    let mut fake = FakeReplica::start().await;
    let (client, mut conn) = connected(&mut fake).await;
    drop(client);
    let cmd = conn.request().await;
    assert_eq!(cmd.op, Operation::CloseSession);
    assert_eq!(cmd.seq, 1);
}

#[tokio::test]
async fn create_delete_list_and_describe() {
    let mut fake = FakeReplica::start().await;
    let (client, mut conn) = connected(&mut fake).await;
    let c = client.clone();
    let script = tokio::spawn(async move {
        c.create("q", "Queue", vec![Value::from(2)]).await?;
        let list = c.list().await?;
        c.delete("q").await?;
        let text = c.describe("q").await?;
        c.reinit("q", vec![]).await?;
        Ok::<_, ClientError>((list, text))
    });
    let cmd = conn.request().await;
    assert_eq!(
        cmd.op,
        Operation::Create {
            name: "q".into(),
            type_name: "Queue".into(),
            args: vec![Value::from(2)],
        }
    );
    conn.ok(&cmd, Value::Nil);
    let cmd = conn.request().await;
    assert_eq!(cmd.op, Operation::List);
    conn.ok(
        &cmd,
        Value::Map(vec![(Value::from("q"), Value::from("Queue"))]),
    );
    let cmd = conn.request().await;
    assert_eq!(cmd.op, Operation::Delete { name: "q".into() });
    conn.ok(&cmd, Value::Nil);
    let cmd = conn.request().await;
    assert_eq!(cmd.op, call_op("q", "__str__", vec![]));
    conn.ok(&cmd, Value::from("<DQueue>"));
    let cmd = conn.request().await;
    assert_eq!(cmd.op, call_op("q", "__concoordinit__", vec![]));
    conn.ok(&cmd, Value::Nil);
    let (list, text) = done(script).await.unwrap();
    assert_eq!(list["q"], "Queue");
    assert_eq!(text, "<DQueue>");
}

#[tokio::test]
async fn proxies_send_concoord_methods_and_convert_results() {
    let mut fake = FakeReplica::start().await;
    let (client, mut conn) = connected(&mut fake).await;
    let c = client.clone();
    let script = tokio::spawn(async move {
        let counter = c.counter("counter");
        counter.increment().await?;
        let value = counter.getvalue().await?;
        let lock = c.lock("lock");
        let got = lock.try_acquire().await?;
        let dict = c.dict("d");
        let missing = dict.get("k").await?;
        let barrier = Barrier::new(&c, "b");
        barrier.wait().await?;
        let bad = counter.getvalue().await;
        Ok::<_, ClientError>((value, got, missing, bad))
    });
    let expect = [
        (
            call_op("counter", "increment", vec![]),
            ReplyResult::Ok(Value::Nil),
        ),
        (
            call_op("counter", "getvalue", vec![]),
            ReplyResult::Ok(Value::from(5)),
        ),
        (
            call_op("lock", "acquire", vec![Value::Boolean(false)]),
            ReplyResult::Ok(Value::Boolean(false)),
        ),
        (
            call_op("d", "get", vec![Value::from("k")]),
            ReplyResult::Ok(Value::Nil),
        ),
        (call_op("b", "wait", vec![]), ReplyResult::Ok(Value::Nil)),
        (
            call_op("counter", "getvalue", vec![]),
            ReplyResult::Ok(Value::from("five")),
        ),
    ];
    for (op, result) in expect {
        let cmd = conn.request().await;
        assert_eq!(cmd.op, op);
        conn.reply(&cmd, result);
    }
    let (value, got, missing, bad) = done(script).await.unwrap();
    assert_eq!((value, got, missing), (5, false, None));
    assert!(matches!(bad, Err(ClientError::Protocol(_))));
}

#[tokio::test]
async fn status_of_one_replica() {
    let mut fake = FakeReplica::start().await;
    let addr = fake.addr.clone();
    let asking = tokio::spawn(async move { fetch_status(&addr, Duration::from_secs(2)).await });
    let mut conn = fake.accept().await;
    assert!(matches!(conn.frame().await, Some(ClientFrame::Status)));
    let want = report(1, &[&fake.addr]);
    conn.send(ReplicaFrame::Status(want.clone()));
    assert_eq!(done(asking).await.unwrap(), want);

    // A replica that never answers is a timeout, not a hang.
    let addr = fake.addr.clone();
    let asking = tokio::spawn(async move { fetch_status(&addr, Duration::from_millis(200)).await });
    let _conn = fake.accept().await;
    assert_eq!(done(asking).await, Err(ClientError::Timeout));
}

#[tokio::test]
async fn many_tasks_share_one_connection() {
    let mut fake = FakeReplica::start().await;
    let (client, mut conn) = connected(&mut fake).await;
    let calls: Vec<_> = (0..50)
        .map(|i| spawn_call(&client, "echo", vec![Value::from(i)]))
        .collect();
    for _ in 0..50 {
        let cmd = conn.request().await;
        let Operation::Call { args, .. } = &cmd.op else {
            panic!()
        };
        conn.ok(&cmd, args[0].clone());
    }
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(done(call).await.unwrap(), Value::from(i));
    }
    assert!(fake.quiet_for(Duration::from_millis(50)).await);
}
