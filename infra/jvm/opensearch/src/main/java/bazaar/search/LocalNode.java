package bazaar.search;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.core.LoggerContext;
import org.apache.logging.log4j.core.config.Configurator;
import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.plugins.Plugin;

/**
 * Runs one OpenSearch node in this JVM with its modules taken from the classpath.
 *
 * <p>The standard distribution starts through its Bootstrap class, which installs the security manager, checks
 * for jar hell, refuses root and loads modules from a modules/ folder of unpacked zips. Bazaar builds the node
 * from Maven jars, so it skips Bootstrap and hands the module classes to Node directly.
 *
 * <p>Usage: {@code LocalNode PATH_HOME}. Every setting comes from PATH_HOME/config/opensearch.yml; logging from
 * PATH_HOME/config/log4j2.properties.
 */
public final class LocalNode {

    /** Modules the distribution ships that the project's search index relies on. */
    private static final List<String> MODULES = List.of(
            "org.opensearch.transport.Netty4Plugin",
            "org.opensearch.analysis.common.CommonAnalysisPlugin",
            "org.opensearch.index.mapper.MapperExtrasPlugin",
            "org.opensearch.painless.PainlessPlugin");

    private static final long CLOSE_TIMEOUT_SECONDS = 20;

    private LocalNode() {
    }

    /** A Node whose plugins are classes already on the classpath. */
    static final class ClasspathNode extends Node {
        ClasspathNode(Environment environment, Collection<Class<? extends Plugin>> plugins) {
            // forbidPrivateIndexSettings=true: the same as a production node.
            super(environment, plugins, true);
        }
    }

    public static void main(String[] args) {
        if (args.length != 1) {
            System.err.println("usage: LocalNode PATH_HOME");
            System.exit(2);
        }
        try {
            run(Paths.get(args[0]).toAbsolutePath());
        } catch (Throwable e) {
            // Printed to stdout/stderr, which the service appends to its log file.
            System.err.println("bazaar-search: node failed to start");
            e.printStackTrace();
            // Exit at once so the service sees the death instead of waiting for its health timeout.
            Runtime.getRuntime().halt(1);
        }
    }

    private static void run(Path home) throws Exception {
        Environment environment = prepareEnvironment(home);
        Node node = new ClasspathNode(environment, loadModules());
        CountDownLatch closed = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> shutdown(node, closed), "bazaar-search-shutdown"));
        node.start();
        // Node threads may all be daemons; this keeps the JVM alive until SIGTERM runs the hook.
        closed.await();
    }

    private static Environment prepareEnvironment(Path home) throws Exception {
        Path config = home.resolve("config");
        Settings input = Settings.builder().put("path.home", home.toString()).build();
        Environment environment = InternalSettingsPreparer.prepareEnvironment(
                input, Map.of(), config, () -> "bazaar-search");
        LogConfigurator.registerErrorListener();
        if (Node.NODE_NAME_SETTING.exists(environment.settings())) {
            LogConfigurator.setNodeName(Node.NODE_NAME_SETTING.get(environment.settings()));
        }
        LogConfigurator.configure(environment);
        // The plugin service lists these folders even when every plugin comes from the classpath.
        Files.createDirectories(environment.modulesFile());
        Files.createDirectories(environment.pluginsFile());
        return environment;
    }

    private static Collection<Class<? extends Plugin>> loadModules() throws ClassNotFoundException {
        List<Class<? extends Plugin>> plugins = new ArrayList<>();
        for (String name : MODULES) {
            plugins.add(Class.forName(name).asSubclass(Plugin.class));
        }
        return plugins;
    }

    private static void shutdown(Node node, CountDownLatch closed) {
        try {
            node.close();
            node.awaitClose(CLOSE_TIMEOUT_SECONDS, TimeUnit.SECONDS);
        } catch (Exception e) {
            e.printStackTrace();
        } finally {
            // log4j's own shutdown hook is disabled so that the close above is still logged.
            Configurator.shutdown((LoggerContext) LogManager.getContext(false));
            closed.countDown();
        }
    }
}
