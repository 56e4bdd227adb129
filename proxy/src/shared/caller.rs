//! Who made a request, as the ledger and the usage endpoints name it.

/// The tenant name of a request made with auth off.
pub const ANONYMOUS: &str = "anonymous";
/// The tenant name of a request made with the admin key.
pub const ADMIN: &str = "admin";

/// Who made a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// Auth is off: nobody is identified.
    Anonymous,
    Tenant(String),
    Admin,
}

impl Caller {
    /// The name requests are accounted under in the ledger.
    pub fn tenant_name(&self) -> &str {
        match self {
            Caller::Anonymous => ANONYMOUS,
            Caller::Tenant(name) => name,
            Caller::Admin => ADMIN,
        }
    }
}

/// The tenant a request is accounted to.
pub fn tenant_of(caller: Option<&Caller>) -> String {
    caller
        .map_or(Caller::Anonymous.tenant_name(), Caller::tenant_name)
        .to_owned()
}
