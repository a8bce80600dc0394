//! The in-cluster part of an apply and destroy: Kubernetes objects against the API-server
//! double, Helm releases through the fake helm, AWS (the database whose password a Secret
//! carries) on moto — one graph, one apply, one destroy.

use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::{Value, json};

use super::apiserver::ApiServer;
use super::moto::Moto;
use super::{Run, repo, run_with};

const BLUEPRINT: &str = r#"
blueprint: trails-cluster
region: us-east-1
templates: templates

environments:
  dev:
    ephemeral: true
    ttl: 2h

network:
  cidr: 10.20.0.0/16
  azs: [a, b]
  nat: single
  subnets:
    public: [10.20.0.0/24, 10.20.1.0/24]
    private: [10.20.16.0/20, 10.20.32.0/20]
    database: [10.20.64.0/24, 10.20.65.0/24]

postgres:
  main:
    instance_class: db.t4g.micro
    storage_gb: 20
    backup_retention_days: 1

kubernetes:
  context: double
  namespaces:
    turia-trails: { labels: { team: platform } }
    monitoring: {}
  storage_classes:
    gp3:
      provisioner: ebs.csi.aws.com
      parameters: { type: gp3, encrypted: "true" }
      default: true
  rbac:
    developers: { namespace: turia-trails, group: turia-trails-developers, cluster_role: edit }
    readers: { group: turia-trails-readers, cluster_role: view }
  secrets:
    postgres-credentials:
      namespace: turia-trails
      data:
        host: ${aws.db_instance.main.address}
        username: ${aws.db_instance.main.username}
        password: ${aws.db_instance.main.password}
  manifests:
    monitoring-crds:
      template: test/servicemonitor-crd.yaml
      depends_on: [helm.release.kube-prometheus-stack]

helm:
  cert-manager:
    chart: cert-manager
    repository: https://charts.jetstack.io
    version: v1.16.1
    namespace: cert-manager
    values_template: helm/cert-manager.yaml
  kube-prometheus-stack:
    chart: kube-prometheus-stack
    repository: https://prometheus-community.github.io/helm-charts
    version: 65.5.0
    namespace: monitoring
    values_template: helm/kube-prometheus-stack.yaml
    values: { retention: 15d, storage: 50Gi, storage_class: gp3 }
    timeout_minutes: 15
  metrics-server:
    chart: metrics-server
    repository: https://kubernetes-sigs.github.io/metrics-server
    version: 3.12.2
    namespace: kube-system
    values_template: helm/metrics-server.yaml
    depends_on: [helm.release.cert-manager]

ingest:
  image: ghcr.io/turia/trails:0.1.0
  namespace: turia-trails
  replicas: 2
  autoscaling: { min: 2, max: 6 }
  host: ingest.example.test
  env:
    DATABASE_URL: postgres://${aws.db_instance.main.username}:${aws.db_instance.main.password}@${aws.db_instance.main.address}:5432/trails
    KAFKA_BROKERS: redpanda.redpanda.svc:9093
"#;

/// Where the API server keeps the ServiceMonitor CRD.
const CRD_PATH: &str =
    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/servicemonitors.monitoring.coreos.com";

/// The ServiceMonitor CRD, which kube-prometheus-stack brings in a real cluster.
const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: { plural: servicemonitors, singular: servicemonitor, kind: ServiceMonitor }
  versions:
    - name: v1
      served: true
      storage: true
      schema: { openAPIV3Schema: { type: object, x-kubernetes-preserve-unknown-fields: true } }
"#;

struct Platform {
    moto: Moto,
    api: ApiServer,
    dir: tempfile::TempDir,
    file: PathBuf,
    events: PathBuf,
}

impl Platform {
    /// The namespace `name`, if it exists.
    fn namespace(&self, name: &str) -> Option<Value> {
        self.api.get("v1", "Namespace", None, name)
    }

    /// Namespace `name`'s ownership mark (`Null` when unmarked); panics when it is gone.
    fn namespace_owner(&self, name: &str) -> Value {
        self.namespace(name).unwrap_or_else(|| panic!("namespace {name}"))["metadata"]
            ["annotations"]["trails.dev/owner"]
            .clone()
    }
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let events = dir.path().join("events.log");
        std::fs::write(&events, "").expect("events log");
        let api = ApiServer::start(events.clone());
        std::fs::write(dir.path().join("kubeconfig"), api.kubeconfig()).expect("kubeconfig");
        copy_dir(&repo("templates"), &dir.path().join("templates"));
        std::fs::create_dir_all(dir.path().join("templates/test")).expect("test templates");
        std::fs::write(
            dir.path().join("templates/test/servicemonitor-crd.yaml"),
            CRD,
        )
        .expect("crd template");
        let file = dir.path().join("platform.yaml");
        std::fs::write(&file, BLUEPRINT).expect("blueprint");
        std::fs::create_dir_all(dir.path().join("helm")).expect("helm dir");
        Self {
            moto: Moto::start(),
            api,
            dir,
            file,
            events,
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = self.moto.env();
        let path = |p: &str| self.dir.path().join(p).display().to_string();
        env.push(("KUBECONFIG", path("kubeconfig")));
        env.push((
            "TRAILS_HELM",
            repo("tests/fixtures/fake-helm").display().to_string(),
        ));
        env.push(("FAKE_HELM_DIR", path("helm")));
        env.push(("FAKE_HELM_EVENTS", self.events.display().to_string()));
        env
    }

    fn trails(&self, extra_env: &[(&'static str, String)], args: &[&str]) -> Run {
        let mut env = self.env();
        env.extend(extra_env.iter().cloned());
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["-f", self.file.to_str().expect("utf-8 path")]);
        run_with(None, &env, &full)
    }

    fn events(&self) -> Vec<String> {
        std::fs::read_to_string(&self.events)
            .expect("events log")
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn position(&self, prefix: &str) -> usize {
        let events = self.events();
        events
            .iter()
            .position(|line| line.starts_with(prefix))
            .unwrap_or_else(|| panic!("no event `{prefix}` in:\n{}", events.join("\n")))
    }

    /// The ingest Deployment once `replicas` of it are ready (the HPA scales it after apply).
    fn ingest_ready(&self, replicas: i64) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let deployment = self
                .api
                .get("apps/v1", "Deployment", Some("turia-trails"), "ingest")
                .expect("deployment");
            if deployment["status"]["readyReplicas"] == json!(replicas) {
                return deployment;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not {replicas} ready replicas after 10s: {deployment:#}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    fn decoded(&self, secret: &str, key: &str) -> String {
        let object = self
            .api
            .get("v1", "Secret", Some("turia-trails"), secret)
            .unwrap_or_else(|| panic!("secret {secret} exists"));
        let encoded = object["data"][key].as_str().expect("base64 text");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("base64");
        String::from_utf8(bytes).expect("utf-8")
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Both copies of the master password in the cluster hold `password`, and neither `run`'s
/// output nor the state does.
fn copies_hold(platform: &Platform, password: &str, run: &Run) {
    assert_eq!(
        platform.decoded("postgres-credentials", "password"),
        password
    );
    assert!(
        platform
            .decoded("ingest-env", "DATABASE_URL")
            .contains(password)
    );
    assert!(!run.stdout.contains(password) && !run.stderr.contains(password));
    let state = std::fs::read_to_string(platform.dir.path().join(".trails/dev.state.json"))
        .expect("state beside the blueprint");
    assert!(!state.contains(password), "the password is in the state");
}

/// The ARN of the instance's RDS-managed master secret.
async fn master_secret_arn(moto: &Moto) -> String {
    let instances = moto
        .rds()
        .describe_db_instances()
        .send()
        .await
        .expect("DescribeDBInstances");
    instances
        .db_instances()
        .iter()
        .find_map(|db| db.master_user_secret().and_then(|s| s.secret_arn()))
        .expect("the instance has a managed master secret")
        .to_string()
}

/// RDS's master password, as moto's Secrets Manager keeps it.
fn master_password(moto: &Moto) -> String {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let arn = master_secret_arn(moto).await;
        let secret = moto
            .secrets()
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .expect("GetSecretValue");
        let json: Value =
            serde_json::from_str(secret.secret_string().expect("text")).expect("json");
        json["password"].as_str().expect("password").to_string()
    })
}

/// Puts a new master password into the instance's secret, as RDS's rotation does; returns it.
fn rotate_master_password(moto: &Moto) -> String {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let arn = master_secret_arn(moto).await;
        let secrets = moto.secrets();
        let current = secrets
            .get_secret_value()
            .secret_id(&arn)
            .send()
            .await
            .expect("GetSecretValue");
        let mut json: Value =
            serde_json::from_str(current.secret_string().expect("text")).expect("json");
        let rotated = "rotated-Pw-7c1e0b".to_string();
        json["password"] = json!(rotated);
        secrets
            .put_secret_value()
            .secret_id(&arn)
            .secret_string(json.to_string())
            .send()
            .await
            .expect("PutSecretValue");
        rotated
    })
}

#[test]
fn apply_and_destroy_the_in_cluster_platform_against_the_api_server_double() {
    let platform = Platform::start();

    // A missing helm is refused before anything changes.
    let run = platform.trails(
        &[("TRAILS_HELM", "/nonexistent/helm".into())],
        &["apply", "--yes"],
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("/nonexistent/helm") && run.stderr.contains("TRAILS_HELM"),
        "{}",
        run.stderr
    );
    assert_eq!(
        platform.moto.requests(),
        0,
        "nothing was called before the refusal"
    );
    let run = platform.trails(
        &[("FAKE_HELM_VERSION", "v3.5.0".into())],
        &["apply", "--yes"],
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("helm v3.5.0 is too old"),
        "{}",
        run.stderr
    );
    assert!(platform.events().is_empty(), "{:?}", platform.events());

    // One apply: AWS, namespaces, secrets, releases, CRDs, custom resources, the service.
    let run = platform.trails(&[], &["apply", "--yes", "--wait-timeout", "60s"]);
    assert_eq!(run.code, 0, "apply failed:\n{}\n{}", run.stdout, run.stderr);

    let namespace = platform.namespace("turia-trails").expect("namespace");
    assert_eq!(namespace["metadata"]["labels"]["team"], json!("platform"));
    assert_eq!(
        namespace["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        json!("trails")
    );
    assert_eq!(
        namespace["metadata"]["managedFields"][0]["manager"],
        json!("trails")
    );
    let class = platform
        .api
        .get("storage.k8s.io/v1", "StorageClass", None, "gp3")
        .expect("storage class");
    assert_eq!(
        class["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"],
        json!("true")
    );
    assert_eq!(class["parameters"]["type"], json!("gp3"));
    let binding = platform
        .api
        .get(
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            Some("turia-trails"),
            "developers",
        )
        .expect("role binding");
    assert_eq!(
        binding["subjects"][0]["name"],
        json!("turia-trails-developers")
    );
    assert!(
        platform
            .api
            .get(
                "rbac.authorization.k8s.io/v1",
                "ClusterRoleBinding",
                None,
                "readers"
            )
            .is_some()
    );

    // The Secret carries the real password, read from Secrets Manager at apply time...
    // ...and it is in neither trails' output nor its state.
    let password = master_password(&platform.moto);
    copies_hold(&platform, &password, &run);

    // RDS rotates the master password: the copies in the cluster follow on the next refreshed
    // apply, found by the secret's version (metadata only: diff reads no secret value).
    let rotated = rotate_master_password(&platform.moto);
    let run = platform.trails(&[], &["diff", "--detailed-exitcode"]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    for copy in ["k8s.secret.postgres-credentials", "k8s.secret.ingest-env"] {
        assert!(
            run.stdout
                .lines()
                .any(|line| line.contains(copy) || line.contains("was rotated")),
            "{copy}: {}",
            run.stdout
        );
    }
    assert!(run.stdout.contains("was rotated"), "{}", run.stdout);
    let run = platform.trails(&[], &["apply", "--refresh", "--yes"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    copies_hold(&platform, &rotated, &run);
    let run = platform.trails(&[], &["diff", "--detailed-exitcode"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);

    // The service: Deployment ready, and every object of its templates. The HPA owns the
    // replica count (trails does not set it), and scales to its minimum.
    let deployment = platform.ingest_ready(2);
    assert_eq!(deployment["spec"]["replicas"], json!(2));
    for (api_version, kind) in [
        ("v1", "Service"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("policy/v1", "PodDisruptionBudget"),
        ("networking.k8s.io/v1", "Ingress"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ] {
        assert!(
            platform
                .api
                .get(api_version, kind, Some("turia-trails"), "ingest")
                .is_some(),
            "{kind} ingest missing; cluster has {:#?}",
            platform.api.inventory()
        );
    }

    // Helm: pinned, atomic, waited for, pointed at the context, values rendered.
    let events = platform.events();
    let upgrade = events
        .iter()
        .find(|line| line.starts_with("helm upgrade kube-prometheus-stack "))
        .expect("kube-prometheus-stack installed");
    for part in [
        "kube-prometheus-stack --repo https://prometheus-community.github.io/helm-charts",
        "--version 65.5.0",
        "--namespace monitoring",
        // The release's 15 minutes, bounded by this apply's --wait-timeout 60s.
        "--atomic --wait --timeout 60s",
        "--kube-context double",
    ] {
        assert!(upgrade.contains(part), "`{part}` missing from {upgrade}");
    }
    assert!(
        !upgrade.contains("--create-namespace"),
        "trails creates monitoring: {upgrade}"
    );
    let metrics = events
        .iter()
        .find(|line| line.starts_with("helm upgrade metrics-server "))
        .expect("metrics-server installed");
    assert!(
        metrics.contains("--create-namespace"),
        "kube-system is not trails': {metrics}"
    );
    let values = std::fs::read_to_string(
        platform
            .dir
            .path()
            .join("helm/values-kube-prometheus-stack.yaml"),
    )
    .expect("values passed to helm");
    assert!(
        values.contains("15d") && values.contains("50Gi"),
        "{values}"
    );
    // Order: namespaces before what goes in them; releases before what needs them; the CRD
    // before the custom resource.
    assert!(
        platform.position("kube create v1 Namespace monitoring")
            < platform.position("helm upgrade kube-prometheus-stack")
    );
    assert!(
        platform.position("helm upgrade kube-prometheus-stack")
            < platform.position("kube create apiextensions.k8s.io/v1 CustomResourceDefinition")
    );
    assert!(
        platform.position("helm upgrade cert-manager")
            < platform.position("helm upgrade metrics-server")
    );
    assert!(
        platform.position("kube create apiextensions.k8s.io/v1 CustomResourceDefinition")
            < platform.position("kube create monitoring.coreos.com/v1 ServiceMonitor")
    );
    assert!(
        platform.position("kube create v1 Secret turia-trails/ingest-env")
            < platform.position("kube create apps/v1 Deployment")
    );

    // verify: every release deployed at its pinned version; a release gone is one failure.
    let run = platform.trails(&[], &["verify", "--json", "--only", "helm"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let checks = super::verdicts(&run);
    assert_eq!(checks.len(), 3, "{checks:?}");
    let (_, status, evidence) = checks
        .iter()
        .find(|(name, _, _)| name == "helm.kube-prometheus-stack")
        .expect("release check");
    assert_eq!(status, "passed");
    assert!(
        evidence.contains("deployed") && evidence.contains("65.5.0"),
        "{evidence}"
    );
    let release = platform
        .dir
        .path()
        .join("helm/releases/kube-system.metrics-server");
    let kept = std::fs::read(&release).expect("release record");
    std::fs::remove_file(&release).expect("uninstall behind trails' back");
    let run = platform.trails(&[], &["verify", "--json", "--only", "helm"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let failed: Vec<_> = super::verdicts(&run)
        .into_iter()
        .filter(|(_, status, _)| status == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "helm.metrics-server");
    assert!(
        failed[0].2.contains("release: not found"),
        "{:?}",
        failed[0]
    );
    std::fs::write(&release, kept).expect("restore the release");

    // The ServiceMonitor waits for the release that brings its CRD (an edge, not a timeout).
    let run = platform.trails(&[], &["plan", "--json"]);
    let plan: Value = serde_json::from_str(&run.stdout).expect("plan --json");
    let monitor = plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .find(|change| change["address"] == json!("k8s.manifest.ingest-servicemonitor"))
        .expect("the ServiceMonitor is planned");
    assert!(
        monitor["depends_on"]
            .as_array()
            .expect("depends_on")
            .contains(&json!("helm.release.kube-prometheus-stack")),
        "{monitor:#}"
    );

    // Nothing changed: nothing to do, no call to the cluster or helm.
    let before = platform.events().len();
    let run = platform.trails(&[], &["plan", "--detailed-exitcode"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(platform.events().len(), before);

    drift_is_shown_and_repaired(&platform);

    // An edit: the namespace label changes in place, the HPA's floor rises and it scales.
    let edited = BLUEPRINT
        .replace("labels: { team: platform }", "labels: { team: ingest }")
        .replace(
            "replicas: 2\n  autoscaling: { min: 2",
            "replicas: 4\n  autoscaling: { min: 4",
        );
    std::fs::write(&platform.file, &edited).expect("edit blueprint");
    let run = platform.trails(&[], &["apply", "--yes", "--wait-timeout", "60s"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let namespace = platform.namespace("turia-trails").expect("namespace");
    assert_eq!(namespace["metadata"]["labels"]["team"], json!("ingest"));
    let deployment = platform.ingest_ready(4);
    assert_eq!(deployment["spec"]["replicas"], json!(4));

    // A helm failure fails that release only, with helm's own words; the rest completes.
    let edited = edited
        .replace("storage: 50Gi", "storage: 80Gi")
        .replace("team: ingest", "team: platform");
    std::fs::write(&platform.file, &edited).expect("edit blueprint");
    let run = platform.trails(
        &[("FAKE_HELM_FAIL", "kube-prometheus-stack".into())],
        &["apply", "--yes", "--wait-timeout", "60s"],
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("helm.release.kube-prometheus-stack")
            && run.stderr.contains("UPGRADE FAILED")
            && run.stderr.contains("rolled back"),
        "{}",
        run.stderr
    );
    let namespace = platform.namespace("turia-trails").expect("namespace");
    assert_eq!(
        namespace["metadata"]["labels"]["team"],
        json!("platform"),
        "the independent change completed"
    );
    // helm's own rollback (a failed revision, then "Rollback to N") is not drift.
    let diff = platform.trails(&[], &["diff"]);
    assert!(
        !diff.stdout.contains("revision:"),
        "helm's rollback of the failed upgrade reported as drift:\n{}",
        diff.stdout
    );
    let run = platform.trails(&[], &["apply", "--yes", "--wait-timeout", "60s"]);
    assert_eq!(
        run.code, 0,
        "the retry converges: {}{}",
        run.stdout, run.stderr
    );

    // Destroy: an object with a finalizer holds its namespace; destroy says so and stops.
    let held = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "held", "namespace": "turia-trails", "finalizers": ["example.com/hold"]}});
    apply_by_hand(
        &platform.api,
        "/api/v1/namespaces/turia-trails/configmaps/held",
        &held,
    );
    let run = platform.trails(&[], &["destroy", "--yes", "--wait-timeout", "3s"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("v1 Namespace turia-trails")
            && run.stderr.contains("example.com/hold")
            && run.stderr.contains("NamespaceContentRemaining"),
        "{}",
        run.stderr
    );
    // Only the held namespace failed; the rest of the destroy went on.
    assert!(run.stdout.contains("1 failed"), "{}", run.stdout);
    // Release the finalizer (as its controller would) and destroy again.
    let mut live = platform
        .api
        .get("v1", "ConfigMap", Some("turia-trails"), "held")
        .expect("held object");
    live["metadata"]["finalizers"] = json!([]);
    put_by_hand(
        &platform.api,
        "/api/v1/namespaces/turia-trails/configmaps/held",
        &live,
    );
    let run = platform.trails(&[], &["destroy", "--yes", "--wait-timeout", "60s"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let left: Vec<String> = platform
        .api
        .inventory()
        .into_iter()
        .filter(|object| {
            !object.starts_with("v1 Namespace kube-") && object != "v1 Namespace default"
        })
        .collect();
    assert!(left.is_empty(), "left in the cluster: {left:#?}");
    assert!(
        platform.position("helm uninstall kube-prometheus-stack")
            > platform.position("kube delete apiextensions.k8s.io/v1 CustomResourceDefinition"),
        "the CRD manifest goes before the release it waits for"
    );
    assert!(
        platform.position("helm uninstall metrics-server")
            < platform.position("helm uninstall cert-manager")
    );
}

/// Changes and deletions outside trails: `diff` and `plan --refresh` show them, without
/// touching anything; `apply` of a refreshed plan repairs them; what the HPA owns is not drift.
fn drift_is_shown_and_repaired(platform: &Platform) {
    // `kubectl set env` (another field manager) adds a variable to trails' container: server-
    // side apply merges it into the env list, it is not trails' field, so it is no drift.
    let path = "/apis/apps/v1/namespaces/turia-trails/deployments/ingest";
    let debug = json!({"name": "DEBUG", "value": "1"});
    apply_as(
        &platform.api,
        "kubectl-set",
        path,
        &json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "ingest", "namespace": "turia-trails" },
            "spec": { "template": { "spec": { "containers": [
                { "name": "ingest", "env": [debug.clone()] }
            ]}}}
        }),
    );
    let env = |platform: &Platform| {
        platform
            .api
            .get("apps/v1", "Deployment", Some("turia-trails"), "ingest")
            .expect("deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    assert!(
        env(platform).contains(&debug),
        "merged: {:?}",
        env(platform)
    );
    assert!(
        env(platform).len() > 1,
        "trails' own variables stay beside it: {:?}",
        env(platform)
    );
    let run = platform.trails(&[], &["plan", "--refresh", "--detailed-exitcode"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("what trails read back matches"),
        "{}",
        run.stdout
    );

    // By hand: an image and the replica count, a label, a binding and a Secret deleted, a
    // release uninstalled and another upgraded.
    let mut live = platform
        .api
        .get("apps/v1", "Deployment", Some("turia-trails"), "ingest")
        .expect("deployment");
    live["spec"]["replicas"] = json!(3);
    live["spec"]["template"]["spec"]["containers"][0]["image"] = json!("ghcr.io/evil/trails:1");
    put_by_hand(&platform.api, path, &live);
    let mut namespace = platform.namespace("turia-trails").expect("namespace");
    namespace["metadata"]["labels"]["team"] = json!("someone-else");
    put_by_hand(&platform.api, "/api/v1/namespaces/turia-trails", &namespace);
    delete_by_hand(
        &platform.api,
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/readers",
    );
    delete_by_hand(
        &platform.api,
        "/api/v1/namespaces/turia-trails/secrets/postgres-credentials",
    );
    let releases = platform.dir.path().join("helm/releases");
    std::fs::remove_file(releases.join("kube-system.metrics-server")).expect("uninstall by hand");
    std::fs::write(releases.join("cert-manager.cert-manager"), "4 v1.16.1\n")
        .expect("upgrade by hand");

    let before = platform.events().len();
    let run = platform.trails(&[], &["diff", "--detailed-exitcode"]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    for expected in [
        "k8s.manifest.ingest-deployment: changed outside trails",
        "apps/v1 Deployment turia-trails/ingest: spec.template.spec.containers[name=ingest].image: \"ghcr.io/turia/trails:0.1.0\" -> \"ghcr.io/evil/trails:1\" (set by kubectl-edit)",
        "v1 Namespace turia-trails: metadata.labels.team: \"platform\" -> \"someone-else\" (set by kubectl-edit)",
        "k8s.role_binding.readers: deleted outside trails",
        "k8s.secret.postgres-credentials: deleted outside trails",
        "helm.release.metrics-server: deleted outside trails",
        "revision: 1 -> 4 (upgraded or rolled back outside trails)",
        "Drift: 6 of 40 resource(s) read back differ; `trails apply --refresh` repairs them.",
    ] {
        assert!(
            run.stdout.contains(expected),
            "`{expected}` missing from:\n{}",
            run.stdout
        );
    }
    assert!(
        !run.stdout.contains("replicas"),
        "the HPA's replica count is not drift: {}",
        run.stdout
    );
    let run = platform.trails(&[], &["diff", "--json"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).expect("diff --json");
    assert_eq!(report["summary"]["drifted"], json!(6), "{report:#}");
    assert_eq!(
        report["resources"]["helm.release.metrics-server"],
        json!({"status": "gone", "type": "helm.release"})
    );
    assert_eq!(
        report["resources"]["k8s.namespace.monitoring"]["status"],
        json!("matches")
    );
    // Plain plan does not read back; a refreshed one plans the repairs.
    let run = platform.trails(&[], &["plan", "--detailed-exitcode"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let saved = platform.dir.path().join("repair.plan.json");
    let saved_arg = saved.to_str().expect("utf-8 path");
    let run = platform.trails(
        &[],
        &[
            "plan",
            "--refresh",
            "--detailed-exitcode",
            "--out",
            saved_arg,
        ],
    );
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("+ k8s.role_binding.readers\n")
            && run.stdout.contains("! deleted outside trails"),
        "{}",
        run.stdout
    );
    // What is gone is created again, what changed is updated.
    assert!(
        run.stdout.contains("Plan: 3 to create, 3 to update"),
        "{}",
        run.stdout
    );
    assert_eq!(
        platform.events().len(),
        before,
        "reading back changed nothing"
    );

    // The saved plan was refreshed, so applying it reads back again and must find the same.
    let run = platform.trails(
        &[],
        &[
            "apply",
            "--yes",
            "--plan",
            saved_arg,
            "--wait-timeout",
            "60s",
        ],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let deployment = platform
        .api
        .get("apps/v1", "Deployment", Some("turia-trails"), "ingest")
        .expect("deployment");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        json!("ghcr.io/turia/trails:0.1.0")
    );
    assert_eq!(
        deployment["spec"]["replicas"],
        json!(3),
        "the HPA's count stays"
    );
    assert!(
        env(platform).contains(&debug),
        "the repair keeps what another manager added: {:?}",
        env(platform)
    );
    let namespace = platform.namespace("turia-trails").expect("namespace");
    assert_eq!(namespace["metadata"]["labels"]["team"], json!("platform"));
    assert!(
        platform
            .api
            .get(
                "rbac.authorization.k8s.io/v1",
                "ClusterRoleBinding",
                None,
                "readers"
            )
            .is_some()
    );
    assert_eq!(
        platform.decoded("postgres-credentials", "password"),
        master_password(&platform.moto)
    );
    assert!(releases.join("kube-system.metrics-server").exists());
    let run = platform.trails(&[], &["diff", "--detailed-exitcode"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("No drift"), "{}", run.stdout);

    // A release a killed helm left pending: helm refuses to touch it, so trails names the
    // way out instead of failing with helm's "another operation is in progress".
    let cert_manager = releases.join("cert-manager.cert-manager");
    std::fs::write(&cert_manager, "6 v1.16.1 pending-upgrade\n").expect("interrupted upgrade");
    let upgrades = |platform: &Platform| {
        platform
            .events()
            .iter()
            .filter(|e| e.starts_with("helm upgrade cert-manager "))
            .count()
    };
    let attempted = upgrades(platform);
    let run = platform.trails(
        &[],
        &["apply", "--refresh", "--yes", "--wait-timeout", "60s"],
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("! changed outside trails: status: deployed -> pending-upgrade"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains("cert-manager/cert-manager is pending-upgrade")
            && run
                .stderr
                .contains("`helm rollback cert-manager --namespace cert-manager`"),
        "{}",
        run.stderr
    );
    assert_eq!(
        upgrades(platform),
        attempted,
        "helm was not asked to upgrade"
    );
    std::fs::write(&cert_manager, "7 v1.16.1\n").expect("rolled back by hand");
    let run = platform.trails(
        &[],
        &["apply", "--refresh", "--yes", "--wait-timeout", "60s"],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let run = platform.trails(&[], &["diff", "--detailed-exitcode"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
}

fn delete_by_hand(api: &ApiServer, path: &str) {
    let response = client()
        .delete(format!("{}{path}", api.url))
        .send()
        .expect("delete by hand");
    assert!(response.status().is_success(), "{:?}", response.text());
}

/// An HTTP client that carries the double's kubeconfig token, as kubectl would.
fn client() -> reqwest::blocking::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {}", super::apiserver::TOKEN))
            .expect("header value"),
    );
    reqwest::blocking::Client::builder()
        .default_headers(headers)
        .build()
        .expect("HTTP client")
}

/// `kubectl apply --server-side --force-conflicts` as manager `test`: a hand edit takes the
/// fields it sets even from trails.
fn apply_by_hand(api: &ApiServer, path: &str, object: &Value) {
    let response = client()
        .patch(format!("{}{path}?fieldManager=test&force=true", api.url))
        .header("content-type", "application/apply-patch+yaml")
        .body(object.to_string())
        .send()
        .expect("apply by hand");
    assert!(response.status().is_success(), "{:?}", response.text());
}

/// A server-side apply as `manager`, without force (`kubectl set env` and the like).
fn apply_as(api: &ApiServer, manager: &str, path: &str, object: &Value) {
    let response = client()
        .patch(format!("{}{path}?fieldManager={manager}", api.url))
        .header("content-type", "application/apply-patch+yaml")
        .body(object.to_string())
        .send()
        .expect("apply as another manager");
    assert!(response.status().is_success(), "{:?}", response.text());
}

fn put_by_hand(api: &ApiServer, path: &str, object: &Value) {
    let response = client()
        .put(format!("{}{path}", api.url))
        .header("content-type", "application/json")
        .body(object.to_string())
        .send()
        .expect("put by hand");
    assert!(response.status().is_success(), "{:?}", response.text());
}

#[test]
fn the_api_server_double_keeps_resource_versions_and_selects_by_label() {
    let dir = tempfile::tempdir().expect("temp dir");
    let api = ApiServer::start(dir.path().join("events.log"));
    let path = "/api/v1/namespaces/default/configmaps/a";
    let object = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "a", "labels": {"app": "x"}}, "data": {"k": "v"}});
    apply_by_hand(&api, path, &object);
    let first = api
        .get("v1", "ConfigMap", Some("default"), "a")
        .expect("created");
    apply_by_hand(&api, path, &object);
    let again = api
        .get("v1", "ConfigMap", Some("default"), "a")
        .expect("still there");
    assert_eq!(
        first["metadata"]["resourceVersion"], again["metadata"]["resourceVersion"],
        "no-op apply"
    );
    assert_eq!(first["metadata"]["uid"], again["metadata"]["uid"]);
    // A stale resourceVersion is a conflict.
    let mut stale = again.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    let response = client()
        .put(format!("{}{path}", api.url))
        .body(stale.to_string())
        .send()
        .expect("put");
    assert_eq!(response.status().as_u16(), 409);
    // Selectors.
    let list: Value = client()
        .get(format!(
            "{}/api/v1/namespaces/default/configmaps?labelSelector=app%3Dx",
            api.url
        ))
        .send()
        .and_then(|r| r.json())
        .expect("list");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    let list: Value = client()
        .get(format!(
            "{}/api/v1/namespaces/default/configmaps?labelSelector=app%21%3Dx",
            api.url
        ))
        .send()
        .and_then(|r| r.json())
        .expect("list");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0));
    // Objects in a namespace that does not exist are refused.
    let response = client()
        .patch(format!(
            "{}/api/v1/namespaces/nowhere/configmaps/a?fieldManager=test",
            api.url
        ))
        .header("content-type", "application/apply-patch+yaml")
        .body(object.to_string())
        .send()
        .expect("apply");
    assert_eq!(response.status().as_u16(), 404);
}

/// The same in-cluster apply and destroy against a real cluster. Opt in with
/// `KUBECONFIG=... cargo test --test cli -- --ignored real_cluster` (the helm releases are left
/// out: they would pull charts from the internet).
#[test]
#[ignore = "needs a real cluster: set KUBECONFIG and run with --ignored"]
fn real_cluster_namespaces_secrets_and_manifests() {
    let kubeconfig = std::env::var("KUBECONFIG").expect("KUBECONFIG points at a real cluster");
    let dir = tempfile::tempdir().expect("temp dir");
    copy_dir(&repo("templates"), &dir.path().join("templates"));
    let file = dir.path().join("platform.yaml");
    std::fs::write(
        &file,
        r#"
blueprint: trails-real-cluster
region: us-east-1
templates: templates
environments: { test: { ephemeral: true, ttl: 1h } }
kubernetes:
  namespaces:
    trails-test: { labels: { purpose: trails-test } }
  secrets:
    sample: { namespace: trails-test, data: { key: value } }
"#,
    )
    .expect("blueprint");
    let env = vec![("KUBECONFIG", kubeconfig)];
    let path = file.to_str().expect("utf-8");
    let run = run_with(None, &env, &["apply", "--yes", "-f", path]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let run = run_with(None, &env, &["plan", "--detailed-exitcode", "-f", path]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let run = run_with(None, &env, &["destroy", "--yes", "-f", path]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
}

const NODE_POOLS: &str = r#"
blueprint: trails-nodes
region: us-east-1

environments:
  dev:
    ephemeral: true
    ttl: 2h

network:
  cidr: 10.30.0.0/16
  azs: [a, b]
  nat: single
  subnets:
    public: [10.30.0.0/24, 10.30.1.0/24]
    private: [10.30.16.0/20, 10.30.32.0/20]

eks:
  version: "1.30"
  node_pools:
    general:
      instance_types: [t3.large]
      min: 2
      max: 3
    stateful:
      instance_types: [r6i.large]
      min: 1
      max: 2
"#;

#[test]
fn verify_reports_each_node_pool_ready_from_the_cluster() {
    let dir = tempfile::tempdir().expect("temp dir");
    let api = ApiServer::start(dir.path().join("events.log"));
    std::fs::write(dir.path().join("kubeconfig"), api.kubeconfig()).expect("kubeconfig");
    let file = dir.path().join("nodes.yaml");
    std::fs::write(&file, NODE_POOLS).expect("blueprint");
    let moto = Moto::start();
    let mut env = moto.env();
    env.push((
        "KUBECONFIG",
        dir.path().join("kubeconfig").display().to_string(),
    ));
    let trails = |args: &[&str]| {
        let mut full = args.to_vec();
        full.extend(["-f", file.to_str().expect("utf-8 path")]);
        run_with(None, &env, &full)
    };
    let applied = trails(&["apply", "--yes", "-q"]);
    assert_eq!(applied.code, 0, "apply failed:\n{}", applied.stderr);

    // The node groups' names, as EKS labels their nodes.
    let eks = moto.eks();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let groups: Vec<String> = runtime.block_on(async {
        let clusters = eks.list_clusters().send().await.expect("clusters");
        let cluster = clusters.clusters()[0].clone();
        let mut groups = eks
            .list_nodegroups()
            .cluster_name(cluster)
            .send()
            .await
            .expect("node groups")
            .nodegroups()
            .to_vec();
        groups.sort();
        groups
    });
    let group = |pool: &str| {
        groups
            .iter()
            .find(|name| name.ends_with(pool))
            .unwrap_or_else(|| panic!("no node group for {pool} in {groups:?}"))
            .clone()
    };
    let (general, stateful) = (group("general"), group("stateful"));
    let label = "eks.amazonaws.com/nodegroup";
    let verify = || {
        // The EKS endpoint moto invents answers nothing: the double stands in for it.
        let run = trails(&[
            "verify",
            "--json",
            "--only",
            "kubernetes.nodes",
            "--kube-context",
            "double",
        ]);
        let report: Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|_| panic!("verify --json:\n{}\n{}", run.stdout, run.stderr));
        let checks: Vec<(String, String, String)> = report["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .map(|c| {
                let text = |k: &str| c[k].as_str().unwrap_or_default().to_string();
                (text("name"), text("status"), text("evidence"))
            })
            .collect();
        (run.code, checks)
    };

    // No node has joined yet.
    let (code, checks) = verify();
    assert_eq!(code, 1);
    assert_eq!(checks.len(), 2, "{checks:?}");
    assert!(
        checks.iter().all(|(_, status, evidence)| status == "failed"
            && evidence.starts_with("no node carries eks.amazonaws.com/nodegroup=")),
        "{checks:?}"
    );

    // general: two Ready nodes; stateful: one NotReady; a node of another group is not counted.
    api.node("ip-10-30-16-1", &[(label, &general)], true);
    api.node("ip-10-30-32-1", &[(label, &general)], true);
    api.node("ip-10-30-16-2", &[(label, &stateful)], false);
    api.node("ip-10-30-16-9", &[(label, "someone-elses")], false);
    let (code, checks) = verify();
    assert_eq!(code, 1, "{checks:?}");
    assert_eq!(
        checks[0],
        (
            "kubernetes.nodes.general".to_string(),
            "passed".to_string(),
            "2 of 2 nodes Ready (ip-10-30-16-1, ip-10-30-32-1)".to_string()
        )
    );
    assert_eq!(checks[1].0, "kubernetes.nodes.stateful");
    assert_eq!(checks[1].1, "failed");
    assert!(
        checks[1]
            .2
            .contains("0 of 1 nodes Ready; not ready: ip-10-30-16-2 (KubeletNotReady"),
        "{checks:?}"
    );

    // Below the pool's minimum is a failure even when every node is Ready.
    api.node("ip-10-30-16-2", &[(label, &stateful)], true);
    api.node("ip-10-30-32-1", &[(label, "moved-away")], true);
    let (code, checks) = verify();
    assert_eq!(code, 1, "{checks:?}");
    assert_eq!(
        checks[0].2, "1 of 1 nodes Ready; the pool's minimum is 2",
        "{checks:?}"
    );
    assert_eq!(checks[1].1, "passed", "{checks:?}");

    api.node("ip-10-30-32-1", &[(label, &general)], true);
    let (code, checks) = verify();
    assert_eq!(code, 0, "{checks:?}");
}

#[test]
fn eks_token_prints_an_exec_credential_for_kubeconfigs() {
    // What the kube client and helm run to get a fresh token: signed locally, no AWS call.
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE".to_string()),
        (
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_string(),
        ),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
    ];
    let run = super::run_with(
        None,
        &env,
        &[
            "eks-token",
            "--cluster",
            "turia-prod",
            "--region",
            "eu-west-1",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let credential: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(credential["kind"], "ExecCredential");
    assert_eq!(
        credential["apiVersion"],
        "client.authentication.k8s.io/v1beta1"
    );
    let token = credential["status"]["token"].as_str().expect("token");
    assert!(token.starts_with("k8s-aws-v1."), "{token}");
    let expires = chrono::DateTime::parse_from_rfc3339(
        credential["status"]["expirationTimestamp"]
            .as_str()
            .expect("expirationTimestamp"),
    )
    .expect("RFC 3339");
    let left = expires
        .signed_duration_since(chrono::Utc::now())
        .num_seconds();
    assert!((13 * 60..=14 * 60).contains(&left), "{left}s left");
    assert!(
        !run.stdout.contains("wJalrXUtnFEMI"),
        "the secret key was printed"
    );
}

/// Only namespaces and a Helm release: what the ownership test needs.
const OWNED: &str = r#"
blueprint: trails-owned
region: us-east-1
templates: templates

environments:
  dev: {}

kubernetes:
  context: double
  namespaces:
    team-a: {}
    team-b: {}

helm:
  metrics-server:
    chart: metrics-server
    repository: https://kubernetes-sigs.github.io/metrics-server
    version: 3.12.2
    namespace: kube-system
    values_template: helm/metrics-server.yaml
"#;

#[test]
fn a_namespace_and_a_release_made_outside_trails_are_refused_survive_destroy_and_import_adopts_them()
 {
    let platform = Platform::start();
    std::fs::write(&platform.file, OWNED).expect("blueprint");
    // Someone else's: a namespace applied by another manager, a release installed by hand.
    let namespace = "/api/v1/namespaces/team-a";
    let theirs = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "team-a", "labels": {"owner": "someone"}}});
    apply_by_hand(&platform.api, namespace, &theirs);
    let helm = std::process::Command::new(repo("tests/fixtures/fake-helm"))
        .args([
            "upgrade",
            "--install",
            "metrics-server",
            "metrics-server",
            "--version",
            "3.12.2",
            "--namespace",
            "kube-system",
            "--values",
            "/dev/null",
        ])
        .envs(platform.env())
        .output()
        .expect("fake helm");
    assert!(helm.status.success(), "{helm:?}");
    let by_hand = platform.events().len();

    let run = platform.trails(&[], &["apply", "--yes"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(
        said.contains("v1 Namespace team-a already exists and carries no trails mark"),
        "{said}"
    );
    assert!(
        said.contains("trails import -e dev k8s.namespace.team-a team-a"),
        "{said}"
    );
    assert!(
        said.contains("helm release kube-system/metrics-server already exists"),
        "{said}"
    );
    // Neither was touched: no apply of trails' own to the namespace, no helm upgrade.
    assert_eq!(platform.namespace_owner("team-a"), Value::Null);
    let after: Vec<String> = platform.events()[by_hand..].to_vec();
    assert!(
        !after
            .iter()
            .any(|event| event.contains("team-a")
                || event.starts_with("helm upgrade metrics-server")),
        "{after:#?}"
    );
    // The one trails made carries its mark.
    assert_eq!(
        platform.namespace_owner("team-b"),
        json!("trails-owned/dev/k8s.namespace.team-b")
    );

    // A destroy deletes what trails made and nothing else.
    let run = platform.trails(&[], &["destroy", "--yes"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(platform.namespace("team-b").is_none());
    assert!(platform.namespace("team-a").is_some());
    assert!(
        platform
            .dir
            .path()
            .join("helm/releases/kube-system.metrics-server")
            .exists(),
        "their release survives the destroy"
    );

    // Adopted explicitly, they are trails' from then on.
    let run = platform.trails(&[], &["import", "k8s.namespace.team-a", "team-b"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let run = platform.trails(&[], &["apply", "--yes"]);
    assert_eq!(run.code, 1, "an id that is not the blueprint's is refused");
    assert!(
        format!("{}{}", run.stdout, run.stderr).contains("is `team-a` in the blueprint"),
        "{}{}",
        run.stdout,
        run.stderr
    );
    let run = platform.trails(&[], &["import", "k8s.namespace.nope", "x"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("not declared in the blueprint"),
        "{}",
        run.stderr
    );
    for (address, id) in [
        ("k8s.namespace.team-a", "team-a"),
        ("helm.release.metrics-server", "kube-system/metrics-server"),
    ] {
        let run = platform.trails(&[], &["import", address, id]);
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    }
    let run = platform.trails(&[], &["plan"]);
    assert!(
        run.stdout
            .contains("k8s.namespace.team-a (import team-a: adopted and marked, not created)"),
        "{}",
        run.stdout
    );
    let run = platform.trails(&[], &["apply", "--yes"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        platform.namespace_owner("team-a"),
        json!("trails-owned/dev/k8s.namespace.team-a")
    );
    let labels = std::fs::read_to_string(
        platform
            .dir
            .path()
            .join("helm/labels/kube-system.metrics-server"),
    )
    .expect("release labels");
    assert!(
        labels.contains("trails-environment=dev")
            && labels.contains("trails-resource=metrics-server"),
        "{labels}"
    );
    let run = platform.trails(&[], &["plan", "--detailed-exitcode"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let run = platform.trails(&[], &["destroy", "--yes"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(platform.namespace("team-a").is_none());
}

#[test]
fn a_sensitive_variable_reaches_helm_but_neither_the_plan_nor_the_state_and_the_release_still_goes()
{
    let platform = Platform::start();
    let secret = "s3cr3t-Grafana-9f2";
    std::fs::write(
        platform.dir.path().join("templates/test/grafana.yaml"),
        "adminPassword: {{ values.admin_password }}\nreplicas: {{ values.replicas }}\n",
    )
    .expect("values template");
    let blueprint = r#"
blueprint: trails-secretive
region: us-east-1
templates: templates
variables:
  grafana_password: { sensitive: true, description: Grafana's admin password }
  replicas: "2"
environments:
  dev: { ephemeral: true, ttl: 2h }
kubernetes:
  context: double
helm:
  grafana:
    chart: grafana
    repository: https://grafana.github.io/helm-charts
    version: 8.5.1
    namespace: monitoring
    values_template: test/grafana.yaml
    values: { admin_password: "${var.grafana_password}", replicas: "${var.replicas}" }
"#;
    std::fs::write(&platform.file, blueprint).expect("blueprint");
    let missing = platform.trails(&[], &["plan"]);
    assert_eq!(missing.code, 1, "{}", missing.stdout);
    assert!(
        missing
            .stderr
            .contains("variable `grafana_password` has no value"),
        "{}",
        missing.stderr
    );
    let env = [("TRAILS_VAR_grafana_password", secret.to_string())];
    for args in [&["plan"][..], &["plan", "--json"]] {
        let run = platform.trails(&env, args);
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
        assert!(!run.stdout.contains(secret), "{}", run.stdout);
        assert!(run.stdout.contains("sensitive"), "{}", run.stdout);
    }
    let run = platform.trails(&env, &["apply", "--yes"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(!format!("{}{}", run.stdout, run.stderr).contains(secret));
    let values = std::fs::read_to_string(platform.dir.path().join("helm/values-grafana.yaml"))
        .expect("values helm got");
    assert!(values.contains(secret), "helm gets the value: {values}");
    let state =
        std::fs::read_to_string(platform.dir.path().join(".trails/dev.state.json")).expect("state");
    assert!(!state.contains(secret), "{state}");
    let run = platform.trails(&env, &["plan", "--detailed-exitcode"]);
    assert_eq!(run.code, 0, "unchanged: {}{}", run.stdout, run.stderr);
    let changed = [("TRAILS_VAR_grafana_password", "rotated-0451".to_string())];
    let run = platform.trails(&changed, &["plan", "--detailed-exitcode"]);
    assert_eq!(run.code, 2, "a new value is a change: {}", run.stdout);
    assert!(!run.stdout.contains("rotated-0451"), "{}", run.stdout);

    // The state keeps the values as digests; the release is still replaced and destroyed.
    let releases = platform.dir.path().join("helm/releases");
    std::fs::write(
        &platform.file,
        blueprint.replace("namespace: monitoring", "namespace: observability"),
    )
    .expect("blueprint");
    let run = platform.trails(&env, &["apply", "--yes"]);
    assert_eq!(run.code, 0, "replace: {}{}", run.stdout, run.stderr);
    // The old release was uninstalled (position panics when no such event exists).
    platform.position("helm uninstall grafana");
    assert!(!releases.join("monitoring.grafana").exists());
    assert!(releases.join("observability.grafana").exists());

    // Its time runs out: `destroy --expired` removes it like anything else.
    let path = platform.dir.path().join(".trails/dev.state.json");
    let mut state: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("state")).expect("json");
    state["expires_at"] = json!(
        humantime::format_rfc3339_seconds(
            std::time::SystemTime::now() - std::time::Duration::from_secs(3600)
        )
        .to_string()
    );
    std::fs::write(&path, state.to_string()).expect("state");
    let run = platform.trails(&env, &["destroy", "--expired", "--yes"]);
    assert_eq!(
        run.code, 0,
        "destroy --expired: {}{}",
        run.stdout, run.stderr
    );
    assert!(!releases.join("observability.grafana").exists());
}

#[test]
fn a_deployment_that_never_becomes_ready_fails_its_apply_at_the_wait_timeout_saying_why() {
    let platform = Platform::start();
    platform.web_template(2);
    let blueprint = |image: &str| {
        format!(
            r#"
blueprint: trails-unready
region: us-east-1
templates: templates
environments:
  dev: {{}}
kubernetes:
  context: double
  namespaces:
    web: {{}}
  manifests:
    web:
      template: test/web.yaml
      namespace: web
      values: {{ image: "{image}" }}
"#
        )
    };
    // Its image cannot be pulled: no replica ever becomes ready.
    std::fs::write(&platform.file, blueprint("registry.example/unpullable:1.0"))
        .expect("blueprint");
    let started = std::time::Instant::now();
    let run = platform.trails(&[], &["apply", "--yes", "--wait-timeout", "3s"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "the wait took {:?}",
        started.elapsed()
    );
    assert!(
        run.stderr.contains("Deployment web/web to be ready")
            && run.stderr.contains("0 of 2 replicas ready"),
        "{}",
        run.stderr
    );
    // A pullable image: the next apply updates it and waits until it is ready.
    std::fs::write(&platform.file, blueprint("registry.example/web:1.0")).expect("blueprint");
    let run = platform.trails(&[], &["apply", "--yes", "--wait-timeout", "30s"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let live = platform
        .api
        .get("apps/v1", "Deployment", Some("web"), "web")
        .expect("deployment");
    assert_eq!(live["status"]["readyReplicas"], json!(2), "{live:#}");
    assert_eq!(platform.trails(&[], &["destroy", "--yes"]).code, 0);
}

fn monitor_exists(platform: &Platform) -> bool {
    platform
        .api
        .get(
            "monitoring.coreos.com/v1",
            "ServiceMonitor",
            Some("monitoring"),
            "web",
        )
        .is_some()
}

#[test]
fn custom_resources_gone_with_their_crd_are_drift_and_destroy_still_finishes() {
    let platform = Platform::start();
    std::fs::write(
        platform.dir.path().join("templates/test/monitor.yaml"),
        "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata:\n  name: web\n\
         spec:\n  selector: { matchLabels: { app: web } }\n  endpoints: [{ port: http }]\n",
    )
    .expect("custom resource template");
    let blueprint = r#"
blueprint: trails-crds
region: us-east-1
templates: templates
environments:
  dev: {}
kubernetes:
  context: double
  namespaces:
    monitoring: {}
  manifests:
    crds:
      template: test/servicemonitor-crd.yaml
    web-monitor:
      template: test/monitor.yaml
      namespace: monitoring
      depends_on: [k8s.manifest.crds]
"#;
    std::fs::write(&platform.file, blueprint).expect("blueprint");
    let run = platform.trails(&[], &["apply", "--yes", "--wait-timeout", "30s"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(monitor_exists(&platform));
    // Someone deletes the CRD (a chart uninstalled by hand): its objects go with it.
    delete_by_hand(&platform.api, CRD_PATH);
    let diff = platform.trails(&[], &["diff", "--detailed-exitcode"]);
    assert_eq!(diff.code, 2, "{}{}", diff.stdout, diff.stderr);
    for gone in ["k8s.manifest.crds", "k8s.manifest.web-monitor"] {
        assert!(
            diff.stdout.contains(gone),
            "{gone} not in:\n{}",
            diff.stdout
        );
    }
    // A refreshed apply brings back the CRD, then its object once the kind is served again.
    let repaired = platform.trails(
        &[],
        &["apply", "--yes", "--refresh", "--wait-timeout", "30s"],
    );
    assert_eq!(repaired.code, 0, "{}{}", repaired.stdout, repaired.stderr);
    assert!(monitor_exists(&platform));
    // Gone again, then destroyed: nothing left to delete is no failure.
    delete_by_hand(&platform.api, CRD_PATH);
    let destroyed = platform.trails(&[], &["destroy", "--yes", "--wait-timeout", "30s"]);
    assert_eq!(
        destroyed.code, 0,
        "{}{}",
        destroyed.stdout, destroyed.stderr
    );
}

#[test]
fn a_release_slower_than_the_wait_timeout_fails_in_time_rolled_back_and_is_not_drift() {
    let platform = Platform::start();
    std::fs::write(&platform.file, OWNED).expect("blueprint");
    let run = platform.trails(&[], &["apply", "--yes", "--wait-timeout", "30s"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);

    // A new chart whose pods take 20 s to be ready, under a 2 s --wait-timeout: helm's own
    // wait is bounded by it (not the release's 10 minutes), fails, and --atomic rolls back.
    std::fs::write(&platform.file, OWNED.replace("3.12.2", "3.12.3")).expect("blueprint");
    let slow = [("FAKE_HELM_READY_AFTER", "metrics-server=20".to_string())];
    let started = std::time::Instant::now();
    let run = platform.trails(&slow, &["apply", "--yes", "--wait-timeout", "2s"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "helm waited {:?}",
        started.elapsed()
    );
    assert!(
        run.stderr.contains("context deadline exceeded") && run.stderr.contains("rolled back"),
        "{}",
        run.stderr
    );
    assert!(
        platform
            .events()
            .iter()
            .any(|line| line.contains("--wait --timeout 2s")),
        "{:?}",
        platform.events()
    );
    // Revisions 2 (failed) and 3 (the rollback to 1) are helm's own undoing: no drift, and
    // the plan still holds the upgrade.
    let diff = platform.trails(&[], &["diff"]);
    assert!(
        !diff.stdout.contains("revision:"),
        "a rolled-back upgrade reported as drift:\n{}",
        diff.stdout
    );
    let plan = platform.trails(&[], &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{}{}", plan.stdout, plan.stderr);
    assert!(plan.stdout.contains("3.12.3"), "{}", plan.stdout);

    // Given the time it needs, the same upgrade converges and the plan is clean.
    let slowish = [("FAKE_HELM_READY_AFTER", "metrics-server=1".to_string())];
    let run = platform.trails(&slowish, &["apply", "--yes", "--wait-timeout", "30s"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let plan = platform.trails(&[], &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);
    assert_eq!(platform.trails(&[], &["destroy", "--yes"]).code, 0);
}

/// Namespaces, a Deployment and a Helm release: what the kill-point test walks through.
const KILLED: &str = r#"
blueprint: trails-killed
region: us-east-1
templates: templates
environments:
  dev: {}
kubernetes:
  context: double
  namespaces:
    team-a: {}
    team-b: {}
  manifests:
    web:
      template: test/web.yaml
      namespace: team-a
      values: { image: "registry.example/web:1.0" }
helm:
  metrics-server:
    chart: metrics-server
    repository: https://kubernetes-sigs.github.io/metrics-server
    version: 3.12.2
    namespace: kube-system
    values_template: helm/metrics-server.yaml
"#;

/// Where a kill-point test holds a step: at the API server's k-th mutating request, or at
/// helm's k-th upgrade or uninstall.
#[derive(Clone, Copy, Debug)]
enum HoldAt {
    Api(usize),
    Helm(usize),
}

impl Platform {
    /// `templates/test/web.yaml`: a Deployment `web` of `replicas`, its image from the values.
    fn web_template(&self, replicas: u32) {
        std::fs::write(
            self.dir.path().join("templates/test/web.yaml"),
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  \
                 replicas: {replicas}\n  selector:\n    matchLabels: {{ app: web }}\n  template:\n    \
                 metadata:\n      labels: {{ app: web }}\n    spec:\n      containers:\n        - \
                 name: web\n          image: {{{{ values.image }}}}\n          securityContext: {{ \
                 runAsNonRoot: true }}\n          resources: {{ limits: {{ memory: 64Mi }} }}\n"
            ),
        )
        .expect("manifest template");
    }

    /// The directory of the fake helm's gate.
    fn helm_hold(&self) -> PathBuf {
        self.dir.path().join("helm-hold")
    }

    /// Upgrades and uninstalls helm has run since the count was last reset.
    fn helm_calls(&self) -> usize {
        std::fs::read_to_string(self.helm_hold().join("seen"))
            .map(|text| text.trim().parse().expect("a count"))
            .unwrap_or(0)
    }

    fn helm_held(&self) -> usize {
        std::fs::read_dir(self.helm_hold())
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|entry| entry.file_name().to_string_lossy().starts_with("held."))
                    .count()
            })
            .unwrap_or(0)
    }

    /// Runs `trails COMMAND --parallelism 1` until it is held at `at`, SIGKILLs it, and lets
    /// the held step run to its end, as a real API server or a helm process (in its own
    /// process group) finishes what reached it.
    fn kill_at(&self, at: HoldAt, command: &str) {
        let hold = self.helm_hold();
        std::fs::create_dir_all(&hold).expect("helm gate");
        let _ = std::fs::remove_file(hold.join("seen"));
        match at {
            HoldAt::Api(k) => self.api.close_gate_after(k),
            HoldAt::Helm(k) => std::fs::write(hold.join("allowed"), k.to_string()).expect("gate"),
        }
        let mut env = self.env();
        env.push(("FAKE_HELM_HOLD", hold.display().to_string()));
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("trails"));
        for (key, _) in std::env::vars() {
            if key.starts_with("TRAILS_") {
                child.env_remove(key);
            }
        }
        let mut child = child
            .args([
                command,
                "--yes",
                "--parallelism",
                "1",
                "--wait-timeout",
                "30s",
                "-f",
            ])
            .arg(&self.file)
            .envs(env)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("trails starts");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while self.api.held() + self.helm_held() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "{command} {at:?}: nothing was held within 60s"
            );
            if let Some(status) = child.try_wait().expect("child status") {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
                }
                panic!(
                    "{command} {at:?}: trails ended ({status}) before anything was held\n{stderr}"
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        self.api.open_gate();
        let _ = std::fs::remove_file(hold.join("allowed"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.helm_held() > 0 {
            assert!(std::time::Instant::now() < deadline, "helm did not finish");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// The objects and releases there are, beside those the double starts with.
    fn leftovers(&self, baseline: &[String]) -> (Vec<String>, Vec<String>) {
        let objects = self
            .api
            .inventory()
            .into_iter()
            .filter(|object| !baseline.contains(object))
            .collect();
        let releases = std::fs::read_dir(self.dir.path().join("helm/releases"))
            .map(|entries| {
                entries
                    .flatten()
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        (objects, releases)
    }
}

#[test]
fn an_in_cluster_apply_or_destroy_killed_at_any_step_is_finished_by_the_next_run() {
    let platform = Platform::start();
    platform.web_template(1);
    std::fs::write(&platform.file, KILLED).expect("blueprint");
    let baseline = platform.api.inventory();
    let nothing: (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());

    // Count the steps of a whole apply and a whole destroy, one change at a time.
    let count = |command: &str| {
        platform.api.close_gate_after(usize::MAX);
        let hold = platform.helm_hold();
        std::fs::create_dir_all(&hold).expect("helm gate");
        let _ = std::fs::remove_file(hold.join("seen"));
        let run = platform.trails(
            &[("FAKE_HELM_HOLD", hold.display().to_string())],
            &[command, "--yes", "--parallelism", "1"],
        );
        assert_eq!(run.code, 0, "{command}: {}{}", run.stdout, run.stderr);
        let counted = (platform.api.mutations(), platform.helm_calls());
        platform.api.open_gate();
        counted
    };
    let (api_applies, helm_applies) = count("apply");
    let (api_destroys, helm_destroys) = count("destroy");
    assert_eq!(platform.leftovers(&baseline), nothing);
    assert!(
        api_applies >= 3 && helm_applies == 1 && api_destroys >= 3 && helm_destroys == 1,
        "{api_applies} {helm_applies} {api_destroys} {helm_destroys}"
    );

    // Every point: before each API request and each helm call of the apply and the destroy.
    let mut points: Vec<(&str, HoldAt)> = Vec::new();
    points.extend((0..api_applies).map(|k| ("apply", HoldAt::Api(k))));
    points.extend((0..helm_applies).map(|k| ("apply", HoldAt::Helm(k))));
    points.extend((0..api_destroys).map(|k| ("destroy", HoldAt::Api(k))));
    points.extend((0..helm_destroys).map(|k| ("destroy", HoldAt::Helm(k))));
    for (command, at) in points {
        if command == "destroy" {
            let run = platform.trails(&[], &["apply", "--yes"]);
            assert_eq!(run.code, 0, "{at:?}: {}{}", run.stdout, run.stderr);
        }
        platform.kill_at(at, command);
        // The next run of the same command finishes the job...
        let run = platform.trails(&[], &[command, "--yes", "--wait-timeout", "30s"]);
        assert_eq!(
            run.code, 0,
            "{command} killed at {at:?}: the next {command} failed\n{}{}",
            run.stdout, run.stderr
        );
        if command == "apply" {
            // ...with nothing left to do, and everything in place.
            let plan = platform.trails(&[], &["plan", "--detailed-exitcode"]);
            assert_eq!(
                plan.code, 0,
                "apply killed at {at:?}: the re-plan is not clean\n{}{}",
                plan.stdout, plan.stderr
            );
            let run = platform.trails(&[], &["destroy", "--yes"]);
            assert_eq!(run.code, 0, "{at:?}: {}{}", run.stdout, run.stderr);
        }
        assert_eq!(
            platform.leftovers(&baseline),
            nothing,
            "{command} killed at {at:?}: the destroy left something"
        );
        super::assert_state_records_nothing(
            &platform.dir.path().join(".trails/dev.state.json"),
            &format!("{command} killed at {at:?}"),
        );
    }
}
