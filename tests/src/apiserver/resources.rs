//! The resource types this server serves: names, kinds, scope, verbs, short names and
//! subresources, the single source for discovery, routing and OpenAPI.

/// A subresource as discovery lists it.
#[derive(Debug)]
pub struct Subresource {
    pub name: &'static str,
    /// `(group, version, kind)` of the subresource's response.
    pub response: (&'static str, &'static str, &'static str),
    pub verbs: &'static [&'static str],
}

/// One served resource type.
#[derive(Debug)]
pub struct ResourceDef {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// Create-only "virtual" resources (reviews) are not stored.
    pub virtual_create_only: bool,
    /// The OpenAPI definition name, e.g. `io.k8s.api.core.v1.Pod`.
    pub definition: &'static str,
}

impl ResourceDef {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The URL prefix of the group version: `/api/v1` or `/apis/apps/v1`.
    pub fn gv_path(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    pub fn has_verb(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }
}

const CRUD: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const CRUD_NO_COLLECTION: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
const GET_PATCH_UPDATE: &[&str] = &["get", "patch", "update"];
const CREATE_ONLY: &[&str] = &["create"];

/// Every served resource, in discovery order.
pub static RESOURCES: &[ResourceDef] = &[
    ResourceDef {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        singular: "configmap",
        namespaced: true,
        short_names: &["cm"],
        categories: &[],
        verbs: CRUD,
        subresources: &[],
        virtual_create_only: false,
        definition: "io.k8s.api.core.v1.ConfigMap",
    },
    ResourceDef {
        group: "",
        version: "v1",
        kind: "Event",
        plural: "events",
        singular: "event",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        verbs: CRUD,
        subresources: &[],
        virtual_create_only: false,
        definition: "io.k8s.api.core.v1.Event",
    },
    ResourceDef {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        singular: "namespace",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
        verbs: CRUD_NO_COLLECTION,
        subresources: &[
            Subresource {
                name: "finalize",
                response: ("", "v1", "Namespace"),
                verbs: &["update"],
            },
            Subresource {
                name: "status",
                response: ("", "v1", "Namespace"),
                verbs: GET_PATCH_UPDATE,
            },
        ],
        virtual_create_only: false,
        definition: "io.k8s.api.core.v1.Namespace",
    },
    ResourceDef {
        group: "",
        version: "v1",
        kind: "Node",
        plural: "nodes",
        singular: "node",
        namespaced: false,
        short_names: &["no"],
        categories: &[],
        verbs: CRUD,
        subresources: &[Subresource {
            name: "status",
            response: ("", "v1", "Node"),
            verbs: GET_PATCH_UPDATE,
        }],
        virtual_create_only: false,
        definition: "io.k8s.api.core.v1.Node",
    },
    ResourceDef {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        singular: "pod",
        namespaced: true,
        short_names: &["po"],
        categories: &["all"],
        verbs: CRUD,
        subresources: &[
            Subresource {
                name: "attach",
                response: ("", "v1", "PodAttachOptions"),
                verbs: &["create", "get"],
            },
            Subresource {
                name: "binding",
                response: ("", "v1", "Binding"),
                verbs: CREATE_ONLY,
            },
            Subresource {
                name: "ephemeralcontainers",
                response: ("", "v1", "Pod"),
                verbs: GET_PATCH_UPDATE,
            },
            Subresource {
                name: "eviction",
                response: ("policy", "v1", "Eviction"),
                verbs: CREATE_ONLY,
            },
            Subresource {
                name: "exec",
                response: ("", "v1", "PodExecOptions"),
                verbs: &["create", "get"],
            },
            Subresource {
                name: "log",
                response: ("", "v1", "Pod"),
                verbs: &["get"],
            },
            Subresource {
                name: "portforward",
                response: ("", "v1", "PodPortForwardOptions"),
                verbs: &["create", "get"],
            },
            Subresource {
                name: "proxy",
                response: ("", "v1", "PodProxyOptions"),
                verbs: &["create", "delete", "get", "patch", "update"],
            },
            Subresource {
                name: "status",
                response: ("", "v1", "Pod"),
                verbs: GET_PATCH_UPDATE,
            },
        ],
        virtual_create_only: false,
        definition: "io.k8s.api.core.v1.Pod",
    },
    ResourceDef {
        group: "",
        version: "v1",
        kind: "Secret",
        plural: "secrets",
        singular: "secret",
        namespaced: true,
        short_names: &[],
        categories: &[],
        verbs: CRUD,
        subresources: &[],
        virtual_create_only: false,
        definition: "io.k8s.api.core.v1.Secret",
    },
    ResourceDef {
        group: "",
        version: "v1",
        kind: "Service",
        plural: "services",
        singular: "service",
        namespaced: true,
        short_names: &["svc"],
        categories: &["all"],
        verbs: CRUD,
        subresources: &[
            Subresource {
                name: "proxy",
                response: ("", "v1", "ServiceProxyOptions"),
                verbs: &["create", "delete", "get", "patch", "update"],
            },
            Subresource {
                name: "status",
                response: ("", "v1", "Service"),
                verbs: GET_PATCH_UPDATE,
            },
        ],
        virtual_create_only: false,
        definition: "io.k8s.api.core.v1.Service",
    },
    ResourceDef {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        singular: "deployment",
        namespaced: true,
        short_names: &["deploy"],
        categories: &["all"],
        verbs: CRUD,
        subresources: &[
            Subresource {
                name: "scale",
                response: ("autoscaling", "v1", "Scale"),
                verbs: GET_PATCH_UPDATE,
            },
            Subresource {
                name: "status",
                response: ("apps", "v1", "Deployment"),
                verbs: GET_PATCH_UPDATE,
            },
        ],
        virtual_create_only: false,
        definition: "io.k8s.api.apps.v1.Deployment",
    },
    ResourceDef {
        group: "authentication.k8s.io",
        version: "v1",
        kind: "SelfSubjectReview",
        plural: "selfsubjectreviews",
        singular: "selfsubjectreview",
        namespaced: false,
        short_names: &[],
        categories: &[],
        verbs: CREATE_ONLY,
        subresources: &[],
        virtual_create_only: true,
        definition: "io.k8s.api.authentication.v1.SelfSubjectReview",
    },
    ResourceDef {
        group: "authentication.k8s.io",
        version: "v1",
        kind: "TokenReview",
        plural: "tokenreviews",
        singular: "tokenreview",
        namespaced: false,
        short_names: &[],
        categories: &[],
        verbs: CREATE_ONLY,
        subresources: &[],
        virtual_create_only: true,
        definition: "io.k8s.api.authentication.v1.TokenReview",
    },
    ResourceDef {
        group: "authorization.k8s.io",
        version: "v1",
        kind: "SelfSubjectAccessReview",
        plural: "selfsubjectaccessreviews",
        singular: "selfsubjectaccessreview",
        namespaced: false,
        short_names: &[],
        categories: &[],
        verbs: CREATE_ONLY,
        subresources: &[],
        virtual_create_only: true,
        definition: "io.k8s.api.authorization.v1.SelfSubjectAccessReview",
    },
    ResourceDef {
        group: "discovery.k8s.io",
        version: "v1",
        kind: "EndpointSlice",
        plural: "endpointslices",
        singular: "endpointslice",
        namespaced: true,
        short_names: &[],
        categories: &[],
        verbs: CRUD,
        subresources: &[],
        virtual_create_only: false,
        definition: "io.k8s.api.discovery.v1.EndpointSlice",
    },
];

/// The served groups in discovery order, each with its single version.
pub const GROUPS: &[(&str, &str)] = &[
    ("apps", "v1"),
    ("authentication.k8s.io", "v1"),
    ("authorization.k8s.io", "v1"),
    ("discovery.k8s.io", "v1"),
];

/// Looks up a resource by group, version and plural name.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Looks up a resource by group and kind (any version we serve).
pub fn find_kind(group: &str, kind: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.kind == kind)
}

/// Resources of one group version.
pub fn in_group_version<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static ResourceDef> + 'a {
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}
