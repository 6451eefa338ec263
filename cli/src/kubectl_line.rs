//! The kubectl command line that opened a recorded stream, as the user would have typed it:
//! `kubectl exec -it checkout-7b9 -n payments -c app -- sh`.
use gatehouse_proto::v1::{FileCopy, StreamOpened};

/// The command line of an exec, attach or port-forward stream.
pub fn stream_command(o: &StreamOpened) -> String {
    stream_command_with_copy(o, None)
}

/// Like [`stream_command`], but an exec recognised as `kubectl cp` reads as the copy.
pub fn stream_command_with_copy(o: &StreamOpened, copy: Option<&FileCopy>) -> String {
    let mut w: Vec<String> = vec!["kubectl".into()];
    if let Some(c) = copy {
        // kubectl cp's local path never reaches the API server: `<local>` stands for it.
        let remote = format!("{}/{}:{}", o.namespace, o.pod, c.path);
        w.push("cp".into());
        if c.direction == "to_container" {
            w.extend(["<local>".into(), remote]);
        } else {
            w.extend([remote, "<local>".into()]);
        }
        container(o, &mut w);
        return join(&w);
    }
    match o.kind.as_str() {
        "portforward" => {
            w.extend(["port-forward".into(), format!("pod/{}", o.pod)]);
            namespace(o, &mut w);
            w.extend(o.ports.iter().map(u32::to_string));
        }
        kind => {
            w.push(kind.to_string());
            match (o.stdin, o.tty) {
                (true, true) => w.push("-it".into()),
                (true, false) => w.push("-i".into()),
                (false, true) => w.push("-t".into()),
                (false, false) => {}
            }
            w.push(o.pod.clone());
            namespace(o, &mut w);
            container(o, &mut w);
            if kind == "exec" && !o.command.is_empty() {
                w.push("--".into());
                w.extend(o.command.iter().cloned());
            }
        }
    }
    join(&w)
}

fn namespace(o: &StreamOpened, w: &mut Vec<String>) {
    if !o.namespace.is_empty() {
        w.extend(["-n".into(), o.namespace.clone()]);
    }
}

fn container(o: &StreamOpened, w: &mut Vec<String>) {
    if !o.container.is_empty() {
        w.extend(["-c".into(), o.container.clone()]);
    }
}

/// Joins words, single-quoting those a POSIX shell would split or expand.
fn join(words: &[String]) -> String {
    words
        .iter()
        .map(|s| {
            let plain = s == "<local>"
                || (!s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c)));
            if plain {
                s.clone()
            } else {
                format!("'{}'", s.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened(kind: &str, command: &[&str], stdin: bool, tty: bool) -> StreamOpened {
        StreamOpened {
            kind: kind.into(),
            command: command.iter().map(|s| s.to_string()).collect(),
            container: "app".into(),
            tty,
            stdin,
            namespace: "payments".into(),
            pod: "checkout-7b9".into(),
            ..Default::default()
        }
    }

    #[test]
    fn exec_reads_like_the_typed_command() {
        assert_eq!(
            stream_command(&opened("exec", &["sh"], true, true)),
            "kubectl exec -it checkout-7b9 -n payments -c app -- sh"
        );
        assert_eq!(
            stream_command(&opened(
                "exec",
                &["sh", "-c", "echo hi; exit 3"],
                false,
                false
            )),
            "kubectl exec checkout-7b9 -n payments -c app -- sh -c 'echo hi; exit 3'"
        );
        assert_eq!(
            stream_command(&opened("attach", &[], true, true)),
            "kubectl attach -it checkout-7b9 -n payments -c app"
        );
    }

    #[test]
    fn port_forward_and_cp() {
        let mut pf = opened("portforward", &[], false, false);
        pf.ports = vec![8080, 9090];
        pf.container.clear();
        assert_eq!(
            stream_command(&pf),
            "kubectl port-forward pod/checkout-7b9 -n payments 8080 9090"
        );
        let tar = opened("exec", &["tar", "xmf", "-", "-C", "/tmp"], true, false);
        let copy = FileCopy {
            direction: "to_container".into(),
            path: "/tmp".into(),
            ..Default::default()
        };
        assert_eq!(
            stream_command_with_copy(&tar, Some(&copy)),
            "kubectl cp <local> payments/checkout-7b9:/tmp -c app"
        );
        let copy = FileCopy {
            direction: "from_container".into(),
            path: "/etc/my file".into(),
            ..Default::default()
        };
        assert_eq!(
            stream_command_with_copy(&tar, Some(&copy)),
            "kubectl cp 'payments/checkout-7b9:/etc/my file' <local> -c app"
        );
    }
}
