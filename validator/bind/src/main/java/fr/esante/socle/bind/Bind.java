package fr.esante.socle.bind;

import ca.uhn.fhir.jpa.starter.AppProperties;
import java.nio.file.Path;
import java.util.List;
import org.springframework.boot.context.properties.bind.BindHandler;
import org.springframework.boot.context.properties.bind.Bindable;
import org.springframework.boot.context.properties.bind.Binder;
import org.springframework.boot.context.properties.bind.handler.NoUnboundElementsBindHandler;
import org.springframework.boot.context.properties.source.ConfigurationPropertySources;
import org.springframework.boot.env.YamlPropertySourceLoader;
import org.springframework.core.env.PropertySource;
import org.springframework.core.io.FileSystemResource;

/**
 * Binds {@code hapi.fhir} of an application.yaml to the starter's AppProperties as Spring Boot does at start-up, with
 * a handler that fails on any key left unbound (a misspelt or unknown setting), then prints what the server reads.
 */
public final class Bind {

	private Bind() {}

	public static void main(String[] args) throws Exception {
		List<PropertySource<?>> sources =
				new YamlPropertySourceLoader().load("application.yaml", new FileSystemResource(Path.of(args[0])));
		Binder binder = new Binder(ConfigurationPropertySources.from(sources));
		AppProperties p = binder.bind(
						"hapi.fhir", Bindable.of(AppProperties.class), new NoUnboundElementsBindHandler(BindHandler.DEFAULT))
				.get();
		var ig = p.getImplementationGuides().get("frcore");
		var tx = p.getRemoteTerminologyServicesMap().get("all");
		System.out.println("custom_interceptor_classes=" + String.join(",", p.getCustomInterceptorClasses()));
		System.out.println("terminology=" + tx.getSystem() + " " + tx.getUrl());
		System.out.println("ig=" + ig.getName() + " " + ig.getVersion() + " " + ig.getInstallMode()
				+ " fetchDependencies=" + ig.isFetchDependencies());
		System.out.println("enable_repository_validating_interceptor=" + p.getEnable_repository_validating_interceptor());
		System.out.println("requests_enabled=" + p.getValidation().getRequests_enabled());
	}
}
