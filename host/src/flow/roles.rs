//! Roles: who does manual tasks and receives notifications (`rules/roles.toml`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::registry::Diagnostic;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    #[serde(default)]
    pub description: Option<String>,
    /// Where notifications for this role are POSTed.
    #[serde(default)]
    pub webhook: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Roles(pub BTreeMap<String, Role>);

impl Roles {
    /// The webhook of `role`, if one is configured.
    pub fn webhook(&self, role: &str) -> Option<&str> {
        self.0.get(role).and_then(|r| r.webhook.as_deref())
    }

    /// Reads `<rules>/roles.toml`; a missing file means no roles.
    pub fn load(rules_dir: &Path) -> Result<Roles, Diagnostic> {
        let path = rules_dir.join("roles.toml");
        let Ok(source) = std::fs::read_to_string(&path) else {
            return Ok(Roles::default());
        };
        let roles: BTreeMap<String, Role> =
            toml::from_str(&source).map_err(|e| Diagnostic::from_toml(&path, &source, &e))?;
        for (name, role) in &roles {
            if let Some(url) = &role.webhook
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(Diagnostic::error(
                    &path,
                    None,
                    format!("role `{name}`: webhook `{url}` is not an http:// or https:// URL"),
                ));
            }
        }
        Ok(Roles(roles))
    }
}
