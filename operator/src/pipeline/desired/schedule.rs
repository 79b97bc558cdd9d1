//! The scheduled batch pull: a CronJob running `taxistream-worker ingest`
//! (the role Airflow's daily DAG had in the original design).

use croner::parser::{CronParser, Seconds, Year};
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;

use super::config::METRICS_PORT;
use super::security::secret_volumes;
use super::workloads::{pod_meta, pod_spec, pod_volumes, worker_container};
use super::{Inputs, Stage, names};

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const DESCRIPTORS: [&str; 7] = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

/// Checks a schedule the way the CronJob controller will read it: five
/// fields (or a descriptor), parsed by `croner`, and without the `L`, `W`
/// and `#` extensions Kubernetes does not understand. The error is a
/// sentence for the `Degraded` condition.
pub fn validate(schedule: &str) -> Result<(), String> {
    let schedule = schedule.trim();
    if DESCRIPTORS.contains(&schedule) {
        return Ok(());
    }
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "schedule {schedule:?} has {} fields; a CronJob needs five (minute hour day-of-month month day-of-week)",
            fields.len()
        ));
    }
    for (i, field) in fields.iter().enumerate() {
        let words = field
            .split(|c: char| !c.is_ascii_alphabetic())
            .filter(|w| !w.is_empty());
        for word in words {
            let upper = word.to_ascii_uppercase();
            let known = match i {
                3 => MONTHS.contains(&upper.as_str()),
                4 => DAYS.contains(&upper.as_str()),
                _ => false,
            };
            if !known {
                return Err(format!(
                    "schedule {schedule:?}: {word:?} in field {} is not understood by Kubernetes CronJobs",
                    i + 1
                ));
            }
        }
        if field.contains('#') {
            return Err(format!(
                "schedule {schedule:?}: '#' in field {} is not understood by Kubernetes CronJobs",
                i + 1
            ));
        }
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(schedule)
        .map(|_| ())
        .map_err(|e| format!("schedule {schedule:?} is not a valid cron expression: {e}"))
}

/// The CronJob, when the spec has a schedule. Suspending the pipeline
/// suspends the CronJob too.
pub fn cron_job(inputs: &Inputs<'_>, config_hash: &str) -> Option<CronJob> {
    let schedule = inputs.pipeline.spec.schedule.clone()?;
    let (secret_vols, secret_mounts) = secret_volumes(inputs, Stage::Ingest);
    let container = worker_container(
        inputs,
        Stage::Ingest,
        "ingest",
        // A batch pull ends when its inputs are read.
        &["--exit-when-idle"],
        METRICS_PORT,
        &secret_mounts,
    );
    let mut pod = pod_spec(
        inputs,
        Stage::Ingest,
        vec![container],
        pod_volumes(inputs, secret_vols),
    );
    pod.restart_policy = Some("OnFailure".to_owned());
    // A batch pod has nothing to spread against.
    pod.topology_spread_constraints = None;
    let mut meta = pod_meta(inputs, Stage::Ingest, config_hash, METRICS_PORT);
    if let Some(labels) = meta.labels.as_mut() {
        labels.insert(
            super::LABEL_COMPONENT.to_owned(),
            "ingest-schedule".to_owned(),
        );
    }
    Some(CronJob {
        metadata: inputs.meta(
            names::cron_job(&inputs.name),
            inputs.stage_labels(Stage::Ingest),
        ),
        spec: Some(CronJobSpec {
            schedule,
            time_zone: Some("Etc/UTC".to_owned()),
            concurrency_policy: Some("Forbid".to_owned()),
            starting_deadline_seconds: Some(300),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(3),
            suspend: Some(inputs.pipeline.spec.suspend),
            job_template: JobTemplateSpec {
                metadata: None,
                spec: Some(JobSpec {
                    backoff_limit: Some(3),
                    active_deadline_seconds: Some(6 * 3600),
                    ttl_seconds_after_finished: Some(24 * 3600),
                    template: PodTemplateSpec {
                        metadata: Some(meta),
                        spec: Some(pod),
                    },
                    ..JobSpec::default()
                }),
            },
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn kubernetes_schedules_pass() {
        for ok in [
            "0 2 * * *",
            "*/15 * * * *",
            "0 6 1 JAN,JUL *",
            "30 5 * * MON-FRI",
            "@daily",
            "0 0 ? * *",
        ] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn bad_schedules_say_why() {
        let err = validate("0 2 * *").unwrap_err();
        assert!(err.contains("4 fields"), "{err}");
        let err = validate("0 0 L * *").unwrap_err();
        assert!(err.contains("not understood by Kubernetes"), "{err}");
        let err = validate("61 * * * *").unwrap_err();
        assert!(err.contains("not a valid cron expression"), "{err}");
        let err = validate("0 0 * * 5#2").unwrap_err();
        assert!(err.contains('#'), "{err}");
        assert!(validate("0 0 * FOO *").is_err());
        assert!(validate("0 0 0 0 0 0").is_err());
    }
}
