pub mod alerts;
pub mod layout;
pub mod status_panel;
pub mod timeline;
