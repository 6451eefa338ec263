//! OpenAPI v3 component schemas for the served kinds: the one source for `/openapi/v3`,
//! strict field validation, and strategic-merge / apply list keys.
//!
//! The schemas cover the fields real manifests commonly use; objects we do not model in
//! detail are marked `x-kubernetes-preserve-unknown-fields` so valid input is never rejected.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use serde_json::{Map, Value, json};

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";
const CORE: &str = "io.k8s.api.core.v1";
const APPS: &str = "io.k8s.api.apps.v1";
const AUTHN: &str = "io.k8s.api.authentication.v1";
const AUTHZ: &str = "io.k8s.api.authorization.v1";

fn string() -> Value {
    json!({"type": "string"})
}
fn int32() -> Value {
    json!({"type": "integer", "format": "int32"})
}
fn int64() -> Value {
    json!({"type": "integer", "format": "int64"})
}
fn boolean() -> Value {
    json!({"type": "boolean"})
}
fn string_map() -> Value {
    json!({"type": "object", "additionalProperties": {"type": "string", "default": ""}})
}
fn strings() -> Value {
    json!({"type": "array", "items": {"type": "string", "default": ""}})
}
fn atomic_strings() -> Value {
    json!({"type": "array", "items": {"type": "string", "default": ""}, "x-kubernetes-list-type": "atomic"})
}
fn r(name: &str) -> Value {
    json!({"allOf": [{"$ref": format!("#/components/schemas/{name}")}], "default": {}})
}
fn array_of(name: &str) -> Value {
    json!({"type": "array", "items": r(name)})
}
/// A list merged by `key` in strategic merge patch and keyed by it in server-side apply.
fn keyed(name: &str, key: &str) -> Value {
    json!({
        "type": "array",
        "items": r(name),
        "x-kubernetes-list-map-keys": [key],
        "x-kubernetes-list-type": "map",
        "x-kubernetes-patch-merge-key": key,
        "x-kubernetes-patch-strategy": "merge"
    })
}
fn free() -> Value {
    json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}
fn obj(desc: &str, props: Vec<(&str, Value)>) -> Value {
    let mut p = Map::new();
    for (k, v) in props {
        p.insert(k.to_string(), v);
    }
    json!({"description": desc, "type": "object", "properties": p})
}
fn kind(desc: &str, group: &str, version: &str, kind: &str, props: Vec<(&str, Value)>) -> Value {
    let mut all = vec![
        ("apiVersion", string()),
        ("kind", string()),
        ("metadata", r(&format!("{META}.ObjectMeta"))),
    ];
    all.extend(props);
    let mut o = obj(desc, all);
    o["x-kubernetes-group-version-kind"] =
        json!([{"group": group, "kind": kind, "version": version}]);
    o
}
fn list_kind(group: &str, version: &str, kind: &str, item: &str) -> Value {
    let mut o = obj(
        &format!("{kind} is a list of objects."),
        vec![
            ("apiVersion", string()),
            ("kind", string()),
            ("metadata", r(&format!("{META}.ListMeta"))),
            ("items", array_of(item)),
        ],
    );
    o["required"] = json!(["items"]);
    o["x-kubernetes-group-version-kind"] =
        json!([{"group": group, "kind": kind, "version": version}]);
    o
}

fn definitions() -> BTreeMap<String, Value> {
    let mut d: BTreeMap<String, Value> = BTreeMap::new();
    let mut add = |name: String, v: Value| {
        d.insert(name, v);
    };
    // --- meta ---
    add(
        format!("{META}.ObjectMeta"),
        obj(
            "ObjectMeta is metadata that all persisted resources must have.",
            vec![
                ("annotations", string_map()),
                ("creationTimestamp", r(&format!("{META}.Time"))),
                ("deletionGracePeriodSeconds", int64()),
                ("deletionTimestamp", r(&format!("{META}.Time"))),
                ("finalizers", {
                    let mut s = strings();
                    s["x-kubernetes-list-type"] = json!("set");
                    s["x-kubernetes-patch-strategy"] = json!("merge");
                    s
                }),
                ("generateName", string()),
                ("generation", int64()),
                ("labels", string_map()),
                (
                    "managedFields",
                    array_of(&format!("{META}.ManagedFieldsEntry")),
                ),
                ("name", string()),
                ("namespace", string()),
                (
                    "ownerReferences",
                    keyed(&format!("{META}.OwnerReference"), "uid"),
                ),
                ("resourceVersion", string()),
                ("selfLink", string()),
                ("uid", string()),
            ],
        ),
    );
    add(
        format!("{META}.ListMeta"),
        obj(
            "ListMeta describes metadata that synthetic resources must have.",
            vec![
                ("continue", string()),
                ("remainingItemCount", int64()),
                ("resourceVersion", string()),
                ("selfLink", string()),
            ],
        ),
    );
    add(
        format!("{META}.Time"),
        json!({"type": "string", "format": "date-time"}),
    );
    add(
        format!("{META}.MicroTime"),
        json!({"type": "string", "format": "date-time"}),
    );
    add(format!("{META}.FieldsV1"), json!({"type": "object"}));
    add(
        format!("{META}.ManagedFieldsEntry"),
        obj(
            "ManagedFieldsEntry is a workflow-id, a FieldSet and the group version of the resource that the fieldset applies to.",
            vec![
                ("apiVersion", string()),
                ("fieldsType", string()),
                ("fieldsV1", r(&format!("{META}.FieldsV1"))),
                ("manager", string()),
                ("operation", string()),
                ("subresource", string()),
                ("time", r(&format!("{META}.Time"))),
            ],
        ),
    );
    add(
        format!("{META}.OwnerReference"),
        obj(
            "OwnerReference contains enough information to let you identify an owning object.",
            vec![
                ("apiVersion", string()),
                ("blockOwnerDeletion", boolean()),
                ("controller", boolean()),
                ("kind", string()),
                ("name", string()),
                ("uid", string()),
            ],
        ),
    );
    add(
        format!("{META}.LabelSelector"),
        obj(
            "A label selector is a label query over a set of resources.",
            vec![
                ("matchExpressions", {
                    let mut a = array_of(&format!("{META}.LabelSelectorRequirement"));
                    a["x-kubernetes-list-type"] = json!("atomic");
                    a
                }),
                ("matchLabels", string_map()),
            ],
        ),
    );
    add(
        format!("{META}.LabelSelectorRequirement"),
        obj(
            "A label selector requirement.",
            vec![
                ("key", string()),
                ("operator", string()),
                ("values", atomic_strings()),
            ],
        ),
    );
    add(
        format!("{META}.Preconditions"),
        obj(
            "Preconditions must be fulfilled before an operation is carried out.",
            vec![("resourceVersion", string()), ("uid", string())],
        ),
    );
    let mut delete_options = obj(
        "DeleteOptions may be provided when deleting an API object.",
        vec![
            ("apiVersion", string()),
            ("dryRun", atomic_strings()),
            ("gracePeriodSeconds", int64()),
            (
                "ignoreStoreReadErrorWithClusterBreakingPotential",
                boolean(),
            ),
            ("kind", string()),
            ("orphanDependents", boolean()),
            ("preconditions", r(&format!("{META}.Preconditions"))),
            ("propagationPolicy", string()),
        ],
    );
    delete_options["x-kubernetes-group-version-kind"] = json!([
        {"group": "", "kind": "DeleteOptions", "version": "v1"},
        {"group": "apps", "kind": "DeleteOptions", "version": "v1"},
        {"group": "authentication.k8s.io", "kind": "DeleteOptions", "version": "v1"},
        {"group": "authorization.k8s.io", "kind": "DeleteOptions", "version": "v1"}
    ]);
    add(format!("{META}.DeleteOptions"), delete_options);
    add(
        format!("{META}.Status"),
        obj(
            "Status is a return value for calls that don't return other objects.",
            vec![
                ("apiVersion", string()),
                ("code", int32()),
                ("details", free()),
                ("kind", string()),
                ("message", string()),
                ("metadata", r(&format!("{META}.ListMeta"))),
                ("reason", string()),
                ("status", string()),
            ],
        ),
    );
    add(
        format!("{META}.Patch"),
        json!({"description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.", "type": "object"}),
    );
    add(
        format!("{META}.WatchEvent"),
        obj(
            "Event represents a single event to a watched resource.",
            vec![("object", free()), ("type", string())],
        ),
    );
    add(
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString".into(),
        json!({"format": "int-or-string", "oneOf": [{"type": "integer"}, {"type": "string"}]}),
    );
    add(
        "io.k8s.apimachinery.pkg.api.resource.Quantity".into(),
        json!({"oneOf": [{"type": "string"}, {"type": "number"}]}),
    );
    // --- core ---
    add(
        format!("{CORE}.ConfigMap"),
        kind(
            "ConfigMap holds configuration data for pods to consume.",
            "",
            "v1",
            "ConfigMap",
            vec![
                (
                    "binaryData",
                    json!({"type": "object", "additionalProperties": {"type": "string", "format": "byte"}}),
                ),
                ("data", string_map()),
                ("immutable", boolean()),
            ],
        ),
    );
    add(
        format!("{CORE}.ConfigMapList"),
        list_kind("", "v1", "ConfigMapList", &format!("{CORE}.ConfigMap")),
    );
    add(
        format!("{CORE}.Secret"),
        kind(
            "Secret holds secret data of a certain type.",
            "",
            "v1",
            "Secret",
            vec![
                (
                    "data",
                    json!({"type": "object", "additionalProperties": {"type": "string", "format": "byte"}}),
                ),
                ("immutable", boolean()),
                ("stringData", string_map()),
                ("type", string()),
            ],
        ),
    );
    add(
        format!("{CORE}.SecretList"),
        list_kind("", "v1", "SecretList", &format!("{CORE}.Secret")),
    );
    add(
        format!("{CORE}.Namespace"),
        kind(
            "Namespace provides a scope for Names.",
            "",
            "v1",
            "Namespace",
            vec![
                ("spec", r(&format!("{CORE}.NamespaceSpec"))),
                ("status", r(&format!("{CORE}.NamespaceStatus"))),
            ],
        ),
    );
    add(
        format!("{CORE}.NamespaceSpec"),
        obj(
            "NamespaceSpec describes the attributes on a Namespace.",
            vec![("finalizers", atomic_strings())],
        ),
    );
    add(
        format!("{CORE}.NamespaceStatus"),
        obj(
            "NamespaceStatus is information about the current status of a Namespace.",
            vec![
                ("conditions", {
                    let mut a = json!({"type": "array", "items": free()});
                    a["x-kubernetes-list-type"] = json!("map");
                    a["x-kubernetes-list-map-keys"] = json!(["type"]);
                    a["x-kubernetes-patch-merge-key"] = json!("type");
                    a["x-kubernetes-patch-strategy"] = json!("merge");
                    a
                }),
                ("phase", string()),
            ],
        ),
    );
    add(
        format!("{CORE}.NamespaceList"),
        list_kind("", "v1", "NamespaceList", &format!("{CORE}.Namespace")),
    );
    // Nodes and EndpointSlices are served for the node agent's watches; their bodies are
    // kept free-form, which is all the agent's tests need.
    add(
        format!("{CORE}.Node"),
        kind(
            "Node is a worker node in Kubernetes.",
            "",
            "v1",
            "Node",
            vec![("spec", free()), ("status", free())],
        ),
    );
    add(
        format!("{CORE}.NodeList"),
        list_kind("", "v1", "NodeList", &format!("{CORE}.Node")),
    );
    add(
        "io.k8s.api.discovery.v1.EndpointSlice".into(),
        kind(
            "EndpointSlice represents a set of service endpoints.",
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
            vec![
                ("addressType", string()),
                ("endpoints", json!({"type": "array", "items": free()})),
                ("ports", json!({"type": "array", "items": free()})),
            ],
        ),
    );
    add(
        "io.k8s.api.discovery.v1.EndpointSliceList".into(),
        list_kind(
            "discovery.k8s.io",
            "v1",
            "EndpointSliceList",
            "io.k8s.api.discovery.v1.EndpointSlice",
        ),
    );
    add(
        format!("{CORE}.Service"),
        kind(
            "Service is a named abstraction of software service.",
            "",
            "v1",
            "Service",
            vec![
                ("spec", r(&format!("{CORE}.ServiceSpec"))),
                ("status", r(&format!("{CORE}.ServiceStatus"))),
            ],
        ),
    );
    add(
        format!("{CORE}.ServiceSpec"),
        obj(
            "ServiceSpec describes the attributes that a user creates on a service.",
            vec![
                ("allocateLoadBalancerNodePorts", boolean()),
                ("clusterIP", string()),
                ("clusterIPs", atomic_strings()),
                ("externalIPs", atomic_strings()),
                ("externalName", string()),
                ("externalTrafficPolicy", string()),
                ("internalTrafficPolicy", string()),
                ("ipFamilies", atomic_strings()),
                ("ipFamilyPolicy", string()),
                ("loadBalancerIP", string()),
                ("ports", {
                    let mut k = keyed(&format!("{CORE}.ServicePort"), "port");
                    k["x-kubernetes-list-map-keys"] = json!(["port", "protocol"]);
                    k
                }),
                ("publishNotReadyAddresses", boolean()),
                ("selector", string_map()),
                ("sessionAffinity", string()),
                ("type", string()),
            ],
        ),
    );
    add(
        format!("{CORE}.ServicePort"),
        obj(
            "ServicePort contains information on service's port.",
            vec![
                ("appProtocol", string()),
                ("name", string()),
                ("nodePort", int32()),
                ("port", int32()),
                ("protocol", string()),
                (
                    "targetPort",
                    r("io.k8s.apimachinery.pkg.util.intstr.IntOrString"),
                ),
            ],
        ),
    );
    add(
        format!("{CORE}.ServiceStatus"),
        obj(
            "ServiceStatus represents the current status of a service.",
            vec![
                ("conditions", json!({"type": "array", "items": free()})),
                ("loadBalancer", free()),
            ],
        ),
    );
    add(
        format!("{CORE}.ServiceList"),
        list_kind("", "v1", "ServiceList", &format!("{CORE}.Service")),
    );
    add(
        format!("{CORE}.Pod"),
        kind(
            "Pod is a collection of containers that can run on a host.",
            "",
            "v1",
            "Pod",
            vec![
                ("spec", r(&format!("{CORE}.PodSpec"))),
                ("status", r(&format!("{CORE}.PodStatus"))),
            ],
        ),
    );
    add(
        format!("{CORE}.PodSpec"),
        obj(
            "PodSpec is a description of a pod.",
            vec![
                ("activeDeadlineSeconds", int64()),
                ("affinity", free()),
                ("automountServiceAccountToken", boolean()),
                ("containers", keyed(&format!("{CORE}.Container"), "name")),
                ("dnsPolicy", string()),
                ("enableServiceLinks", boolean()),
                (
                    "ephemeralContainers",
                    keyed(&format!("{CORE}.Container"), "name"),
                ),
                ("hostNetwork", boolean()),
                ("hostname", string()),
                (
                    "imagePullSecrets",
                    keyed(&format!("{CORE}.LocalObjectReference"), "name"),
                ),
                (
                    "initContainers",
                    keyed(&format!("{CORE}.Container"), "name"),
                ),
                ("nodeName", string()),
                ("nodeSelector", string_map()),
                ("preemptionPolicy", string()),
                ("priority", int32()),
                ("priorityClassName", string()),
                ("restartPolicy", string()),
                ("schedulerName", string()),
                ("securityContext", free()),
                ("serviceAccount", string()),
                ("serviceAccountName", string()),
                ("subdomain", string()),
                ("terminationGracePeriodSeconds", int64()),
                (
                    "tolerations",
                    json!({"type": "array", "items": free(), "x-kubernetes-list-type": "atomic"}),
                ),
                ("volumes", keyed(&format!("{CORE}.Volume"), "name")),
            ],
        ),
    );
    add(
        format!("{CORE}.LocalObjectReference"),
        obj(
            "LocalObjectReference contains enough information to let you locate the referenced object inside the same namespace.",
            vec![("name", string())],
        ),
    );
    add(format!("{CORE}.Volume"), {
        let mut v = obj(
            "Volume represents a named volume in a pod.",
            vec![
                ("configMap", free()),
                ("emptyDir", free()),
                ("hostPath", free()),
                ("name", string()),
                ("persistentVolumeClaim", free()),
                ("projected", free()),
                ("secret", free()),
            ],
        );
        v["required"] = json!(["name"]);
        v
    });
    add(format!("{CORE}.Container"), {
        let mut c = obj(
            "A single application container that you want to run within a pod.",
            vec![
                ("args", atomic_strings()),
                ("command", atomic_strings()),
                ("env", keyed(&format!("{CORE}.EnvVar"), "name")),
                (
                    "envFrom",
                    json!({"type": "array", "items": free(), "x-kubernetes-list-type": "atomic"}),
                ),
                ("image", string()),
                ("imagePullPolicy", string()),
                ("lifecycle", free()),
                ("livenessProbe", free()),
                ("name", string()),
                ("ports", {
                    let mut k = keyed(&format!("{CORE}.ContainerPort"), "containerPort");
                    k["x-kubernetes-list-map-keys"] = json!(["containerPort", "protocol"]);
                    k
                }),
                ("readinessProbe", free()),
                ("resources", r(&format!("{CORE}.ResourceRequirements"))),
                ("securityContext", free()),
                ("startupProbe", free()),
                ("stdin", boolean()),
                ("stdinOnce", boolean()),
                ("targetContainerName", string()),
                ("terminationMessagePath", string()),
                ("terminationMessagePolicy", string()),
                ("tty", boolean()),
                (
                    "volumeMounts",
                    keyed(&format!("{CORE}.VolumeMount"), "mountPath"),
                ),
                ("workingDir", string()),
            ],
        );
        c["required"] = json!(["name"]);
        c
    });
    add(
        format!("{CORE}.ContainerPort"),
        obj(
            "ContainerPort represents a network port in a single container.",
            vec![
                ("containerPort", int32()),
                ("hostIP", string()),
                ("hostPort", int32()),
                ("name", string()),
                ("protocol", string()),
            ],
        ),
    );
    add(
        format!("{CORE}.EnvVar"),
        obj(
            "EnvVar represents an environment variable present in a Container.",
            vec![
                ("name", string()),
                ("value", string()),
                ("valueFrom", free()),
            ],
        ),
    );
    add(
        format!("{CORE}.VolumeMount"),
        obj(
            "VolumeMount describes a mounting of a Volume within a container.",
            vec![
                ("mountPath", string()),
                ("name", string()),
                ("readOnly", boolean()),
                ("subPath", string()),
            ],
        ),
    );
    add(
        format!("{CORE}.ResourceRequirements"),
        obj(
            "ResourceRequirements describes the compute resource requirements.",
            vec![
                (
                    "limits",
                    json!({"type": "object", "additionalProperties": r("io.k8s.apimachinery.pkg.api.resource.Quantity")}),
                ),
                (
                    "requests",
                    json!({"type": "object", "additionalProperties": r("io.k8s.apimachinery.pkg.api.resource.Quantity")}),
                ),
            ],
        ),
    );
    add(
        format!("{CORE}.PodStatus"),
        obj(
            "PodStatus represents information about the status of a pod.",
            vec![
                (
                    "conditions",
                    json!({"type": "array", "items": free(), "x-kubernetes-patch-merge-key": "type", "x-kubernetes-patch-strategy": "merge", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}),
                ),
                (
                    "containerStatuses",
                    json!({"type": "array", "items": free(), "x-kubernetes-list-type": "atomic"}),
                ),
                (
                    "ephemeralContainerStatuses",
                    json!({"type": "array", "items": free(), "x-kubernetes-list-type": "atomic"}),
                ),
                ("hostIP", string()),
                ("hostIPs", json!({"type": "array", "items": free()})),
                ("message", string()),
                ("phase", string()),
                ("podIP", string()),
                ("podIPs", json!({"type": "array", "items": free()})),
                ("qosClass", string()),
                ("reason", string()),
                ("startTime", r(&format!("{META}.Time"))),
            ],
        ),
    );
    add(
        format!("{CORE}.PodList"),
        list_kind("", "v1", "PodList", &format!("{CORE}.Pod")),
    );
    add(
        format!("{CORE}.PodTemplateSpec"),
        obj(
            "PodTemplateSpec describes the data a pod should have when created from a template",
            vec![
                ("metadata", r(&format!("{META}.ObjectMeta"))),
                ("spec", r(&format!("{CORE}.PodSpec"))),
            ],
        ),
    );
    add(
        format!("{CORE}.ObjectReference"),
        obj(
            "ObjectReference contains enough information to let you inspect or modify the referred object.",
            vec![
                ("apiVersion", string()),
                ("fieldPath", string()),
                ("kind", string()),
                ("name", string()),
                ("namespace", string()),
                ("resourceVersion", string()),
                ("uid", string()),
            ],
        ),
    );
    add(
        format!("{CORE}.EventSource"),
        obj(
            "EventSource contains information for an event.",
            vec![("component", string()), ("host", string())],
        ),
    );
    add(
        format!("{CORE}.Event"),
        kind(
            "Event is a report of an event somewhere in the cluster.",
            "",
            "v1",
            "Event",
            vec![
                ("action", string()),
                ("count", int32()),
                ("eventTime", r(&format!("{META}.MicroTime"))),
                ("firstTimestamp", r(&format!("{META}.Time"))),
                ("involvedObject", r(&format!("{CORE}.ObjectReference"))),
                ("lastTimestamp", r(&format!("{META}.Time"))),
                ("message", string()),
                ("reason", string()),
                ("related", r(&format!("{CORE}.ObjectReference"))),
                ("reportingComponent", string()),
                ("reportingInstance", string()),
                ("series", free()),
                ("source", r(&format!("{CORE}.EventSource"))),
                ("type", string()),
            ],
        ),
    );
    add(
        format!("{CORE}.EventList"),
        list_kind("", "v1", "EventList", &format!("{CORE}.Event")),
    );
    // --- apps ---
    add(
        format!("{APPS}.Deployment"),
        kind(
            "Deployment enables declarative updates for Pods and ReplicaSets.",
            "apps",
            "v1",
            "Deployment",
            vec![
                ("spec", r(&format!("{APPS}.DeploymentSpec"))),
                ("status", r(&format!("{APPS}.DeploymentStatus"))),
            ],
        ),
    );
    add(
        format!("{APPS}.DeploymentSpec"),
        obj(
            "DeploymentSpec is the specification of the desired behavior of the Deployment.",
            vec![
                ("minReadySeconds", int32()),
                ("paused", boolean()),
                ("progressDeadlineSeconds", int32()),
                ("replicas", int32()),
                ("revisionHistoryLimit", int32()),
                ("selector", r(&format!("{META}.LabelSelector"))),
                ("strategy", free()),
                ("template", r(&format!("{CORE}.PodTemplateSpec"))),
            ],
        ),
    );
    add(
        format!("{APPS}.DeploymentStatus"),
        obj(
            "DeploymentStatus is the most recently observed status of the Deployment.",
            vec![
                ("availableReplicas", int32()),
                ("collisionCount", int32()),
                (
                    "conditions",
                    json!({"type": "array", "items": free(), "x-kubernetes-patch-merge-key": "type", "x-kubernetes-patch-strategy": "merge", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}),
                ),
                ("observedGeneration", int64()),
                ("readyReplicas", int32()),
                ("replicas", int32()),
                ("terminatingReplicas", int32()),
                ("unavailableReplicas", int32()),
                ("updatedReplicas", int32()),
            ],
        ),
    );
    add(
        format!("{APPS}.DeploymentList"),
        list_kind(
            "apps",
            "v1",
            "DeploymentList",
            &format!("{APPS}.Deployment"),
        ),
    );
    // --- authentication / authorization ---
    add(
        format!("{AUTHN}.UserInfo"),
        obj(
            "UserInfo holds the information about the user needed to implement the user.Info interface.",
            vec![
                (
                    "extra",
                    json!({"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string", "default": ""}}}),
                ),
                ("groups", atomic_strings()),
                ("uid", string()),
                ("username", string()),
            ],
        ),
    );
    add(
        format!("{AUTHN}.TokenReview"),
        kind(
            "TokenReview attempts to authenticate a token to a known user.",
            "authentication.k8s.io",
            "v1",
            "TokenReview",
            vec![
                (
                    "spec",
                    obj(
                        "TokenReviewSpec is a description of the token authentication request.",
                        vec![("audiences", atomic_strings()), ("token", string())],
                    ),
                ),
                (
                    "status",
                    obj(
                        "TokenReviewStatus is the result of the token authentication request.",
                        vec![
                            ("audiences", atomic_strings()),
                            ("authenticated", boolean()),
                            ("error", string()),
                            ("user", r(&format!("{AUTHN}.UserInfo"))),
                        ],
                    ),
                ),
            ],
        ),
    );
    add(
        format!("{AUTHN}.SelfSubjectReview"),
        kind(
            "SelfSubjectReview contains the user information that the kube-apiserver has about the user making this request.",
            "authentication.k8s.io",
            "v1",
            "SelfSubjectReview",
            vec![(
                "status",
                obj(
                    "SelfSubjectReviewStatus is filled by the kube-apiserver and sent back to a user.",
                    vec![("userInfo", r(&format!("{AUTHN}.UserInfo")))],
                ),
            )],
        ),
    );
    add(
        format!("{AUTHZ}.SelfSubjectAccessReview"),
        kind(
            "SelfSubjectAccessReview checks whether or the current user can perform an action.",
            "authorization.k8s.io",
            "v1",
            "SelfSubjectAccessReview",
            vec![
                (
                    "spec",
                    obj(
                        "SelfSubjectAccessReviewSpec is a description of the access request.",
                        vec![
                            ("nonResourceAttributes", free()),
                            ("resourceAttributes", free()),
                        ],
                    ),
                ),
                (
                    "status",
                    obj(
                        "SubjectAccessReviewStatus",
                        vec![
                            ("allowed", boolean()),
                            ("denied", boolean()),
                            ("evaluationError", string()),
                            ("reason", string()),
                        ],
                    ),
                ),
            ],
        ),
    );
    d
}

/// All component schemas, by definition name.
pub static SCHEMAS: LazyLock<BTreeMap<String, Value>> = LazyLock::new(definitions);

/// Follows `allOf: [$ref]` and `$ref` to the referenced schema.
pub fn resolve(schema: &Value) -> &Value {
    let mut s = schema;
    for _ in 0..8 {
        if let Some(first) = s.get("allOf").and_then(|a| a.get(0)) {
            s = first;
            continue;
        }
        if let Some(name) = s
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
        {
            match SCHEMAS.get(name) {
                Some(t) => {
                    s = t;
                    continue;
                }
                None => break,
            }
        }
        break;
    }
    s
}

/// The schema of a kind by its definition name.
pub fn definition(name: &str) -> Option<&'static Value> {
    SCHEMAS.get(name)
}

/// The schema of property `key` of an object schema, resolved.
pub fn property<'a>(schema: &'a Value, key: &str) -> Option<&'a Value> {
    resolve(schema).get("properties")?.get(key).map(resolve)
}

/// The schema of a map's values or an array's items, resolved.
pub fn element(schema: &Value) -> Option<&Value> {
    let s = resolve(schema);
    s.get("items")
        .or_else(|| s.get("additionalProperties"))
        .map(resolve)
}

/// The strategic-merge key of a list schema (`x-kubernetes-patch-merge-key`).
pub fn merge_key(schema: &Value) -> Option<&str> {
    let s = resolve(schema);
    let strategy = s.get("x-kubernetes-patch-strategy").and_then(Value::as_str);
    if strategy.is_some_and(|st| st.contains("merge")) {
        s.get("x-kubernetes-patch-merge-key")
            .and_then(Value::as_str)
    } else {
        None
    }
}

/// Whether a schema accepts any fields (free-form or preserve-unknown).
fn is_free(schema: &Value) -> bool {
    let s = resolve(schema);
    s.get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
        || (s.get("type").and_then(Value::as_str) == Some("object")
            && s.get("properties").is_none()
            && s.get("additionalProperties").is_none())
}

/// Unknown-field paths of `value` against `schema`, in the apiserver's strict-decoding
/// notation (`spec.template.spec.containers[0].foo`).
#[cfg(test)]
pub fn unknown_fields(schema: &Value, value: &Value) -> Vec<String> {
    prune_unknown(schema, &mut value.clone())
}

/// Removes unknown fields from `value` in place (as decoding does) and returns their paths.
pub fn prune_unknown(schema: &Value, value: &mut Value) -> Vec<String> {
    let mut out = Vec::new();
    prune(schema, value, "", &mut out);
    out
}

fn prune(schema: &Value, value: &mut Value, path: &str, out: &mut Vec<String>) {
    if is_free(schema) {
        return;
    }
    let s = resolve(schema);
    match value {
        Value::Object(map) => {
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                let mut unknown = Vec::new();
                for (k, v) in map.iter_mut() {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    match props.get(k) {
                        Some(sub) => prune(sub, v, &p, out),
                        None => {
                            out.push(p);
                            unknown.push(k.clone());
                        }
                    }
                }
                for k in unknown {
                    map.remove(&k);
                }
            } else if let Some(ap) = s.get("additionalProperties") {
                for (k, v) in map.iter_mut() {
                    prune(ap, v, &format!("{path}[{k}]"), out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(it) = s.get("items") {
                for (i, v) in items.iter_mut().enumerate() {
                    prune(it, v, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// The definition names reachable from `roots` through `$ref`s.
pub fn closure(roots: &[String]) -> BTreeSet<String> {
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(r) = m
                    .get("$ref")
                    .and_then(Value::as_str)
                    .and_then(|r| r.strip_prefix("#/components/schemas/"))
                {
                    out.push(r.to_string());
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = roots.to_vec();
    while let Some(n) = todo.pop() {
        if !seen.insert(n.clone()) {
            continue;
        }
        if let Some(s) = SCHEMAS.get(&n) {
            refs(s, &mut todo);
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ref_resolves() {
        let all: Vec<String> = SCHEMAS.keys().cloned().collect();
        for n in closure(&all) {
            assert!(SCHEMAS.contains_key(&n), "dangling $ref {n}");
        }
    }

    #[test]
    fn unknown_fields_are_found_with_paths() {
        let d = definition("io.k8s.api.apps.v1.Deployment").expect("deployment schema");
        let v = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x", "labels": {"a": "b"}},
            "spec": {"bogus": 1, "template": {"spec": {"containers": [{"name": "c", "imagee": "x"}]}}}});
        assert_eq!(
            unknown_fields(d, &v),
            vec![
                "spec.bogus".to_string(),
                "spec.template.spec.containers[0].imagee".to_string()
            ]
        );
    }

    #[test]
    fn containers_merge_by_name() {
        let d = definition("io.k8s.api.core.v1.PodSpec").expect("podspec");
        let c = property(d, "containers").expect("containers");
        assert_eq!(merge_key(c), Some("name"));
    }
}
