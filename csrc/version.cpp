// Placeholder translation unit so the core library is never empty.
namespace inspector { const char* version() { return "0.1.0"; } }
